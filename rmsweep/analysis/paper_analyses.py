"""The paper's analyses (arXiv 2505.10775), computed from any results table: a sweep's or the paper's.

A results table has one row per (model, rm_type) with `name`, `family`, `size_group`, `params_b`, `rm_type`
and `score` (the RewardBench four-section mean). Each analysis returns an `Analysis`: a table, maybe a plot
written next to the report (a local folder or object storage), or, when the results cannot support it, a
sentence saying what it needs.
"""
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rmsweep.data import registry
from rmsweep.sweep import storage  # noqa: E402

# The usual default of each size group: the Llama-3.x instruct model of that size.
LLAMA_BASELINES = {"<3B": "Llama-3.2-1B-Instruct", "3-6B": "Llama-3.2-3B-Instruct", ">=6B": "Llama-3.1-8B-Instruct"}
# Table 1: one base model through its post-training stages (Tulu 3 on Llama-3.1-8B), and Meta's own instruct.
STAGE_MODELS = {"base": "Llama-3.1-8B", "sft": "Llama-3.1-Tulu-3-8B-SFT", "dpo": "Llama-3.1-Tulu-3-8B-DPO",
                "rlvr": "Llama-3.1-Tulu-3-8B", "instruct": "Llama-3.1-8B-Instruct"}
STAGE_COMPARISONS = (("sft", "base"), ("dpo", "sft"), ("rlvr", "sft"), ("instruct", "base"))
RESULT_COLUMNS = ["name", "family", "size_group", "params_b", "stage", "rm_type", "score"]


@dataclass
class Analysis:
    title: str
    table: pd.DataFrame | None = None
    plot: str | None = None  # file name next to the report
    needs: str | None = None  # set when the results cannot support this analysis


def _save(figure, out: storage.Location, name: str) -> None:
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120)
    plt.close(figure)
    out.write_bytes(name, image.getvalue())


def paper_results() -> pd.DataFrame:
    """The paper's published RewardBench scores (Tables 4 and 5) as a results table."""
    models = registry.models().drop(columns="family").rename(columns={"family_key": "family"})
    frames = [models.assign(rm_type=rm_type, score=models[registry.paper_score_columns(rm_type)["overall"]])
              for rm_type in registry.PAPER_SCORE_PREFIXES]
    table = pd.concat(frames).dropna(subset=["score"])
    return table[RESULT_COLUMNS].reset_index(drop=True)


def sweep_results(best_per_model: pd.DataFrame, score_column: str = "rewardbench") -> pd.DataFrame:
    """A sweep's best_per_model table as a results table, scored by one benchmark's overall column."""
    return best_per_model.rename(columns={"model": "name", score_column: "score"})[RESULT_COLUMNS]


def size_group_gains(results: pd.DataFrame) -> Analysis:
    title = "Best base model per size group vs the group's Llama-3.x model"
    rows = []
    for (rm_type, group), members in results.groupby(["rm_type", "size_group"]):
        baseline = members[members["name"] == LLAMA_BASELINES.get(group)]
        if baseline.empty:
            continue
        best = members.loc[members["score"].idxmax()]
        base_score = baseline["score"].iloc[0]
        rows.append({"rm_type": rm_type, "size_group": group, "best": best["name"], "best_score": best["score"],
                     "llama": baseline["name"].iloc[0], "llama_score": base_score,
                     "gain_percent": 100 * (best["score"] / base_score - 1)})
    if not rows:
        return Analysis(title, needs="the Llama-3.x model of a size group among the results "
                                     f"({', '.join(LLAMA_BASELINES.values())})")
    table = pd.DataFrame(rows)
    order = table["size_group"].map(registry.SIZE_GROUPS.index)
    return Analysis(title, table.assign(order=order).sort_values(["rm_type", "order"]).drop(columns="order"))


def stage_deltas(results: pd.DataFrame) -> Analysis:
    title = "Post-training stage: Llama-3.1-8B base -> Tulu 3 SFT -> DPO -> RLVR, and Meta's instruct"
    rows = []
    for rm_type, members in results.groupby("rm_type"):
        scores = members.set_index("name")["score"]
        for later, earlier in STAGE_COMPARISONS:
            later_name, earlier_name = STAGE_MODELS[later], STAGE_MODELS[earlier]
            if later_name in scores and earlier_name in scores:
                rows.append({"rm_type": rm_type, "comparison": f"{later} vs {earlier}", "model": later_name,
                             "score": scores[later_name], "reference": earlier_name,
                             "reference_score": scores[earlier_name],
                             "delta_percent": 100 * (scores[later_name] / scores[earlier_name] - 1)})
    if not rows:
        return Analysis(title, needs="two stages of the same base model among the results "
                                     "(e.g. --family tulu3 plus Llama-3.1-8B)")
    return Analysis(title, pd.DataFrame(rows))


def bt_vs_regression(results: pd.DataFrame) -> Analysis:
    title = "Bradley-Terry vs regression reward models of the same base model"
    both = results.pivot_table(index="name", columns="rm_type", values="score").dropna()
    if both.empty or not {"bt", "regression"} <= set(both.columns):
        return Analysis(title, needs="results of both --rm-type bt and --rm-type regression for the same models")
    table = both[["bt", "regression"]].assign(regression_minus_bt=lambda t: t["regression"] - t["bt"])
    return Analysis(title, table.sort_values("regression_minus_bt", ascending=False).reset_index())


def scale_curve(results: pd.DataFrame, out: storage.Location) -> Analysis:
    title = "Score vs parameters per family (the scale curve)"
    families = [f for f, members in results.groupby("family") if members["name"].nunique() >= 2]
    if not families:
        return Analysis(title, needs="two or more models of one family among the results")
    shown = results[results["family"].isin(families)]
    rm_types = sorted(shown["rm_type"].unique())
    colors = dict(zip(families, plt.get_cmap("tab20").colors))
    figure, panels = plt.subplots(1, len(rm_types), figsize=(6 * len(rm_types), 4.5), sharey=True, squeeze=False)
    for axes, rm_type in zip(panels[0], rm_types):
        for family, members in shown[shown["rm_type"] == rm_type].groupby("family"):
            members = members.sort_values("params_b")
            axes.plot(members["params_b"], members["score"], marker="o", color=colors[family], label=family)
        axes.set_xscale("log")
        axes.set_xlabel("parameters (B)")
        axes.set_title(f"{rm_type} reward models")
    panels[0][0].set_ylabel("RewardBench score")
    panels[0][-1].legend(fontsize="x-small", ncol=2)
    _save(figure, out, "scale_curve.png")
    table = results[results["family"].isin(families)].sort_values(["family", "rm_type", "params_b"])
    return Analysis(title, table[["family", "rm_type", "name", "params_b", "score"]], plot="scale_curve.png")


def lr_sensitivity(trials: pd.DataFrame | None, out: storage.Location) -> Analysis:
    """How much lr and epochs matter per base model: the sweep's own contribution."""
    title = "lr and epochs sensitivity per base model"
    if trials is None or trials.empty:
        return Analysis(title, needs="a sweep's trials.csv")
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, (model, group) in enumerate(trials.groupby("model")):
        color = f"C{index % 10}"
        for stopped, marker_face in ((False, color), (True, "none")):
            subset = group[group["stopped_early"] == stopped]
            axes.scatter(subset["lr"], subset["best_val_accuracy"], facecolors=marker_face, edgecolors=color,
                         label=model if not stopped else None)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("best validation accuracy")
    axes.set_title("hollow: stopped early by ASHA")
    axes.legend(fontsize="small")
    _save(figure, out, "lr_sensitivity.png")
    rows = []
    for model, group in trials.groupby("model"):
        best = group.loc[group["best_val_accuracy"].idxmax()]
        finished = group[~group["stopped_early"]]
        rows.append({"model": model, "trials": len(group), "stopped_early": int(group["stopped_early"].sum()),
                     "best_lr": best["lr"], "best_epochs": best["epochs"],
                     "val_accuracy_range": group["best_val_accuracy"].max() - group["best_val_accuracy"].min(),
                     # Early-stopped trials ran fewer steps, so only finished ones compare epochs fairly.
                     **{f"finished_{e}_epoch_mean_accuracy": finished.loc[finished["epochs"] == e,
                                                                          "best_val_accuracy"].mean()
                        for e in sorted(trials["epochs"].unique())}})
    return Analysis(title, pd.DataFrame(rows), plot="lr_sensitivity.png")


def coverage_curves(selector_summary: dict, out: storage.Location) -> Analysis:
    title = "Coverage@k: selector (in-sample and out-of-fold) vs single features"
    if selector_summary.get("status") != "fitted":
        return Analysis(title, needs=f"a fitted selector ({selector_summary.get('reason', 'not fitted')})")
    curves = {name: pd.Series(curve).rename(index=int) for name, curve in selector_summary["coverage"].items()}
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        style = "-" if name.startswith("selector") else ":"
        axes.plot(curve.index, curve.values, style, marker="." if style == ":" else "o", label=name)
    axes.set_xlabel("k")
    axes.set_ylabel("coverage@k (top-k overlap)")
    axes.legend(fontsize="small")
    _save(figure, out, "coverage.png")
    table = pd.DataFrame(curves)
    table.index.name = "k"
    return Analysis(title, table.loc[[k for k in table.index if k % 5 == 0]].reset_index(), plot="coverage.png")
