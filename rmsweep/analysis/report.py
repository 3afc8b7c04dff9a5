"""report.md: the sweep's results, the selector and the paper's analyses, with plots next to it."""
import pandas as pd

from rmsweep.analysis import paper_analyses, scoring
from rmsweep.config import SweepConfig
from rmsweep.sweep import ledger, storage

BEST_COLUMNS = ["model", "size_group", "params_b", "chat_format", "best_lr", "best_epochs", "val_accuracy",
                "regression_weights",
                *[column for columns in scoring.SCORE_COLUMNS.values() for column in columns.values()]]
TRIAL_COLUMNS = ["model", "lr", "epochs", "status", "steps", "total_steps", "best_val_accuracy", "train_truncated",
                 "train_dropped", "tokens_per_second", "startup_seconds", "eval_seconds", "ray_overhead_seconds",
                 "gpus", "nodes", "wait_seconds", "held_seconds", "wall_seconds", "error"]


def _markdown(table: pd.DataFrame) -> str:
    # tabulate prints None (not NaN) as missingval
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".4g", missingval="–")


def render_analyses(results: list[paper_analyses.Analysis]) -> list[str]:
    """Markdown for each analysis the data supports, then what the others would need."""
    lines = []
    for analysis in results:
        if analysis.needs is None:
            lines += [f"### {analysis.title}", "", _markdown(analysis.table), ""]
            if analysis.plot:
                lines += [f"![{analysis.title}]({analysis.plot})", ""]
    missing = [analysis for analysis in results if analysis.needs is not None]
    if missing:
        lines += ["### Not shown, for lack of data", ""]
        lines += [f"- {analysis.title}: needs {analysis.needs}." for analysis in missing]
        lines.append("")
    return lines


def render_selector(selector: dict) -> list[str]:
    if selector["status"] != "fitted":
        return [f"Not fitted on {selector['fitted_on']}: {selector['reason']}."]
    lacking = ", ".join(selector["models_lacking_features"]) or "none"
    lines = [
        f"Fitted on {selector['fitted_on']}. {selector['n_models']} models, features "
        f"{', '.join(selector['features'])} (rarely published, so not used: "
        f"{', '.join(selector.get('features_left_out', [])) or 'none'}; models left out for a missing value: "
        f"{lacking}). Degree {selector['degree']}, alpha {selector['alpha']:g}, l1_ratio {selector['l1_ratio']:g}; "
        f"out-of-fold mean absolute error {selector['out_of_fold_mean_absolute_error']:.3g}.",
        "",
    ]
    if not any(selector["coefficients_standardised"].values()):
        return lines + ["Every coefficient is zero: these features do not predict the target across these "
                        "models, so there is no ranking to show."]
    return lines + ["Top predicted base models not in this sweep:", "",
                    _markdown(pd.DataFrame(selector["ranking"]).head(10))]


def render_triage(triage: dict | None, best: pd.DataFrame) -> list[str]:
    """The candidates' ranking before training, and for the swept ones what they achieved."""
    if not triage:
        return []
    achieved = (best.set_index("model")["rewardbench"] * 100) if "rewardbench" in best else pd.Series(dtype=float)
    table = pd.DataFrame(triage["ranking"]).assign(
        swept=lambda t: t["name"].isin(triage["swept"]), pinned=lambda t: t["name"].isin(triage["pinned"]),
        achieved=lambda t: t["name"].map(achieved))
    table = table.assign(within=table["achieved"].between(table["low"], table["high"]).where(table["swept"]))
    values = triage["values"]
    lines = ["## Triage: predicted before training, achieved after", "",
             f"Each candidate's {triage['target']} (RewardBench, 0-100) as the selector predicted it from "
             f"{', '.join(triage['features'])} ({values['values']}; `low`-`high`: {triage['interval']}); `achieved`: "
             "this sweep's RewardBench score of its best checkpoint, x 100 (tiny twins are not the models "
             "predicted: compare at --scale full).", ""]
    if values.get("measured_for"):
        lines += [f"Measured values used for {', '.join(values['measured_for'])}: {values['caution']}.", ""]
    lines += [_markdown(table[["name", "predicted", "low", "high", "swept", "pinned", "achieved", "within"]]), ""]
    lines += [f"- {row['name']}: not ranked, no {', '.join(row['missing'])}" for row in triage["unranked"]]
    return lines + ([""] if triage["unranked"] else [])


def plain_format_note(best: pd.DataFrame) -> list[str]:
    """Which models had no chat template, so trained and scored on the plain format."""
    plain = best.loc[best["chat_format"] == "plain", "model"].tolist() if "chat_format" in best else []
    if not plain:
        return []
    return [f"No chat template, so texts used the plain format (each turn `Role: content`, then a blank line; "
            f"docs/candidates.md): {', '.join(plain)}.", ""]


def spending_per_model(trials: pd.DataFrame) -> pd.DataFrame:
    """What each base model cost: trials, trial-steps, GPU-hours; and where a median trial's time went."""
    trials = trials.reindex(columns=TRIAL_COLUMNS)  # a ledger from an older rmsweep lacks some columns
    per_model = trials.assign(gpu_hours=ledger.held_seconds(trials) * trials["gpus"] / 3600).groupby("model")
    return pd.DataFrame({
        "trials": per_model.size(), "trial_steps": per_model["steps"].sum(), "gpu_hours": per_model["gpu_hours"].sum(),
        "median_wall_seconds": per_model["wall_seconds"].median(),
        "median_wait_seconds": per_model["wait_seconds"].median(),
        "median_startup_seconds": per_model["startup_seconds"].median(),
        "median_eval_seconds": per_model["eval_seconds"].median(),
        "median_ray_overhead_seconds": per_model["ray_overhead_seconds"].median(),
        "median_tokens_per_second": per_model["tokens_per_second"].median(),
    }).reset_index()


def best_columns(best: pd.DataFrame) -> list[str]:
    """The columns of BEST_COLUMNS a best_per_model table has (its benchmarks' scores, regression weights)."""
    return [column for column in BEST_COLUMNS if column in best.columns]


def write_report(run_dir: storage.Location, sweep: SweepConfig, trials: pd.DataFrame, best: pd.DataFrame,
                 selector: dict) -> None:
    headline = scoring.SCORE_COLUMNS[sweep.benchmarks[0]]["overall"]
    results = paper_analyses.sweep_results(best, headline)
    counts = trials["status"].value_counts().to_dict()
    lines = [
        f"# rmsweep: `{sweep.name}`, {sweep.rm_type} reward models, scale `{sweep.scale}`",
        "",
        f"{len(trials)} trials ({', '.join(f'{n} {status}' for status, n in counts.items())}); "
        f"{trials['wall_seconds'].sum() / 60:.1f} trial-minutes, "
        f"{ledger.gpu_hours(trials):.2f} GPU-hours; seed {sweep.seed}.",
        "Scores are fractions in [0, 1]. `rewardbench` is the mean of RewardBench's four sections, each "
        "weighted by its published subset counts; `rewardbench2` the mean of RewardBench 2's six domains "
        f"(best-of-4, Ties by its own formula). The analyses use `{headline}`.",
        "",
        "## Best trial per base model",
        "",
        _markdown(best[best_columns(best)]),
        "",
        *plain_format_note(best),
        *render_triage(sweep.triage, best),
        "## Budget and time per base model",
        "",
        _markdown(spending_per_model(trials)),
        "",
        "`startup_seconds`: loading the model and data and wrapping it for its workers, inside the trial; "
        "`eval_seconds`: validation scoring, all evaluations; `ray_overhead_seconds`: the trial's wall time outside "
        "its training loop (Ray Train's worker-group start and teardown, scheduling); `wait_seconds`: before its "
        "training loop started (waiting for resources, starting the worker group); GPU-hours count only the time "
        "after that (`held_seconds`).",
        "",
        "## Selector",
        "",
        *render_selector(selector),
        "",
        "## Analyses",
        "",
        *render_analyses([
            paper_analyses.lr_sensitivity(trials, run_dir),
            paper_analyses.size_group_gains(results),
            paper_analyses.stage_deltas(results),
            paper_analyses.bt_vs_regression(results),
            paper_analyses.scale_curve(results, run_dir),
            paper_analyses.coverage_curves(selector, run_dir),
        ]),
        "## All trials",
        "",
        _markdown(trials.reindex(columns=TRIAL_COLUMNS)),  # reindex: a ledger resumed from an older rmsweep
        "`train_truncated`: training texts whose prompt was cut from the left to fit max_length; "
        "`train_dropped`: training rows left out because the response alone was longer.",
        "",
        f"Disk used by the run directory: {run_dir.size_bytes() / 2**20:.1f} MB.",
        "",
    ]
    run_dir.write_text("report.md", "\n".join(lines))


def write_interrupted_report(run_dir: storage.Location, sweep: SweepConfig, trials: pd.DataFrame, finished: int,
                             resume_command: str) -> str:
    """report.md of a sweep stopped by Ctrl-C: what ran, and how to go on. Returns its headline."""
    headline = f"Interrupted after {finished} of {sweep.expected_trials or '?'} trials"
    lines = [
        f"# rmsweep: `{sweep.name}`, {sweep.rm_type} reward models, scale `{sweep.scale}`", "",
        f"**{headline}.** Nothing was scored yet. Trials marked `interrupted` stopped at an evaluation, with a "
        "checkpoint; the sweep goes on, those trials from their checkpoints, with:", "",
        f"    {resume_command}", "",
        "## Trials so far", "",
        _markdown(trials.reindex(columns=TRIAL_COLUMNS)), "",
    ]
    run_dir.write_text("report.md", "\n".join(lines))
    return headline
