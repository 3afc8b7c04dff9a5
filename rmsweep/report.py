"""report.md and its plots, written into the run directory."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rmsweep import atomic  # noqa: E402

BEST_COLUMNS = ["model", "size_group", "params_b", "best_lr", "best_epochs", "val_accuracy", "chat", "chat_hard",
                "safety", "reasoning", "rewardbench"]
TRIAL_COLUMNS = ["model", "lr", "epochs", "status", "steps", "total_steps", "best_val_accuracy", "wall_seconds"]


def plot_lr_sensitivity(trials: pd.DataFrame, path: Path) -> None:
    """Best validation accuracy against lr, one series per base model; early-stopped trials hollow."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, (model, group) in enumerate(trials.groupby("model")):
        color = f"C{index}"
        finished = group[~group["stopped_early"]]
        stopped = group[group["stopped_early"]]
        axes.scatter(finished["lr"], finished["best_val_accuracy"], color=color, label=model)
        axes.scatter(stopped["lr"], stopped["best_val_accuracy"], facecolors="none", edgecolors=color)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("best validation accuracy")
    axes.set_title("lr sensitivity per base model (hollow: stopped early by ASHA)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def disk_usage_mb(run_dir: Path) -> float:
    return sum(f.stat().st_size for f in Path(run_dir).rglob("*") if f.is_file()) / 2**20


def write_report(run_dir: Path, sweep: dict, trials: pd.DataFrame, best: pd.DataFrame, selector: dict) -> None:
    plot_lr_sensitivity(trials, run_dir / "lr_sensitivity.png")
    counts = trials["status"].value_counts().to_dict()
    lines = [
        f"# rmsweep: family `{sweep['family']}`, {sweep['rm_type']} reward models, scale `{sweep['scale']}`",
        "",
        f"{len(trials)} trials ({', '.join(f'{n} {status}' for status, n in counts.items())}); "
        f"{trials['wall_seconds'].sum() / 60:.1f} trial-minutes; seed {sweep['seed']}.",
        "Scores are fractions in [0, 1]; `rewardbench` is the mean of the four sections, each weighted by "
        "RewardBench's published subset counts.",
        "",
        "## Best trial per base model",
        "",
        best[BEST_COLUMNS].to_markdown(index=False, floatfmt=".4g"),
        "",
        "## lr sensitivity",
        "",
        "![lr sensitivity](lr_sensitivity.png)",
        "",
        "## Selector",
        "",
    ]
    if selector["status"] != "fitted":
        lines.append(f"Not fitted on {selector['fitted_on']}: {selector['reason']}.")
    elif not any(selector["coefficients_standardised"].values()):
        lines.append(f"Fitted on {selector['fitted_on']}, but every coefficient is zero: these features do not "
                     "predict the target across these models, so there is no ranking to show.")
    else:
        lines += [
            f"Fitted on {selector['fitted_on']}.",
            f"Features {', '.join(selector['features'])} (left out for missing values: "
            f"{', '.join(selector['features_left_out']) or 'none'}); cross-validated MAE "
            f"{selector['cv_mean_absolute_error']:.3g}.",
            "",
            "Top predicted base models not in this sweep:",
            "",
            pd.DataFrame(selector["ranking"]).head(10).to_markdown(index=False, floatfmt=".4g"),
        ]
    lines += ["", "## All trials", "", trials[TRIAL_COLUMNS].to_markdown(index=False, floatfmt=".4g"), "",
              f"Disk used by the run directory: {disk_usage_mb(run_dir):.1f} MB.", ""]
    atomic.write_text(run_dir / "report.md", "\n".join(lines))
