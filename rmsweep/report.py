"""report.md: the sweep's results, the selector and the paper's analyses, with plots next to it."""
from pathlib import Path

import pandas as pd

from rmsweep import analyses, atomic

BEST_COLUMNS = ["model", "size_group", "params_b", "best_lr", "best_epochs", "val_accuracy", "chat", "chat_hard",
                "safety", "reasoning", "rewardbench"]
TRIAL_COLUMNS = ["model", "lr", "epochs", "status", "steps", "total_steps", "best_val_accuracy", "wall_seconds"]


def _markdown(table: pd.DataFrame) -> str:
    # tabulate prints None (not NaN) as missingval
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".4g", missingval="–")


def render_analyses(results: list[analyses.Analysis]) -> list[str]:
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


def disk_usage_mb(run_dir: Path) -> float:
    return sum(f.stat().st_size for f in Path(run_dir).rglob("*") if f.is_file()) / 2**20


def write_report(run_dir: Path, sweep: dict, trials: pd.DataFrame, best: pd.DataFrame, selector: dict) -> None:
    results = analyses.sweep_results(best)
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
        _markdown(best[BEST_COLUMNS]),
        "",
        "## Selector",
        "",
        *render_selector(selector),
        "",
        "## Analyses",
        "",
        *render_analyses([
            analyses.lr_sensitivity(trials, run_dir),
            analyses.size_group_gains(results),
            analyses.stage_deltas(results),
            analyses.bt_vs_regression(results),
            analyses.scale_curve(results, run_dir),
            analyses.coverage_curves(selector, run_dir),
        ]),
        "## All trials",
        "",
        _markdown(trials[TRIAL_COLUMNS]),
        "",
        f"Disk used by the run directory: {disk_usage_mb(run_dir):.1f} MB.",
        "",
    ]
    atomic.write_text(run_dir / "report.md", "\n".join(lines))
