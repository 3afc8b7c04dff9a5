"""The simulator's regret-vs-cost plot: one point per strategy, median over seeds with quartile bars."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def regret_vs_cost(results: pd.DataFrame, path: Path) -> None:
    """`results`: one row per (strategy, seed) with regret_all and share_of_grid_steps."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, runs in results.groupby("strategy", sort=False):
        cost, regret = runs["share_of_grid_steps"], runs["regret_all"]
        x, y = cost.median(), regret.median()
        axes.errorbar(x, y, xerr=[[x - cost.quantile(0.25)], [cost.quantile(0.75) - x]],
                      yerr=[[y - regret.quantile(0.25)], [regret.quantile(0.75) - y]], fmt="o", capsize=3)
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("trial-steps spent, share of the full grid's")
    axes.set_ylabel("simple regret, RewardBench points")
    axes.set_title(f"Median and quartiles over {results['seed'].nunique()} seeds")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
