"""Reproduce the analyses of arXiv 2505.10775 from its published results table alone.

Prints what was measured beside what the paper claims (Table 1's post-training deltas, the size-group
gains over Llama-3.x, regression vs Bradley-Terry, the selector's coverage) and writes report.md with
plots.

    python scripts/reproduce_paper.py [--out paper_report]
"""
import argparse
from pathlib import Path

import pandas as pd

from rmsweep.analysis import paper_analyses, report, selector
from rmsweep.data import registry
from rmsweep.sweep import storage

# Table 1 of the paper: RewardBench change of each stage, regression RMs, in percent.
TABLE1_CLAIMS = {"sft vs base": 15.5, "dpo vs sft": -3.1, "rlvr vs sft": -4.8}
SIZE_GROUP_CLAIM = (3.0, 14.0)  # "the best model of each size group beats the Llama-3.x model by 3% to 14%"
SELECTOR_CLAIM = 18.0  # "+18% top-k coverage on average over k = 5..10 against the best single benchmark (ANLI)"


def print_table1(stages: pd.DataFrame) -> None:
    print("Table 1: post-training stages, regression RMs (RewardBench change, %)")
    rows = stages[stages["rm_type"] == "regression"].set_index("comparison")
    for comparison, claimed in TABLE1_CLAIMS.items():
        measured = rows.loc[comparison, "delta_percent"]
        verdict = "exact" if round(measured, 1) == claimed else "DIFFERS"
        print(f"  {comparison:12s} measured {measured:+6.1f}   paper {claimed:+6.1f}   {verdict}")


def print_size_groups(gains: pd.DataFrame) -> None:
    low, high = SIZE_GROUP_CLAIM
    print(f"\nBest base model per size group vs its Llama-3.x model (paper: +{low:g}% to +{high:g}%)")
    for _, row in gains.iterrows():
        inside = "within" if low <= row["gain_percent"] <= high else "outside"
        print(f"  {row['rm_type']:10s} {row['size_group']:5s} {row['best']:24s} {row['best_score']:5.1f} vs "
              f"{row['llama']:24s} {row['llama_score']:5.1f}: {row['gain_percent']:+5.1f}%  "
              f"({inside} the claimed range)")


def print_bt_vs_regression(comparison: pd.DataFrame) -> None:
    wins = int((comparison["regression_minus_bt"] > 0).sum())
    print(f"\nRegression vs Bradley-Terry (paper: regression wins by a wide margin): regression better for "
          f"{wins} of {len(comparison)} models, by {comparison['regression_minus_bt'].mean():+.1f} points on average")


def print_selector(fitted: dict) -> None:
    means = {name: selector.mean_coverage(curve) for name, curve in fitted["coverage"].items()}
    single = {name: value for name, value in means.items() if name.startswith("feature:")}
    best_feature = max(single, key=single.get)
    print(f"\nSelector on regression scores: {fitted['n_models']} models, features {', '.join(fitted['features'])} "
          f"(the only default features published for most models; see features-sources.md)")
    print(f"  mean coverage@5..10: best single feature {best_feature} {single[best_feature]:.3f}")
    for name in ("selector_in_sample", "selector_out_of_fold"):
        gain = 100 * (means[name] / single[best_feature] - 1)
        print(f"  {name:22s} {means[name]:.3f}  ({gain:+.1f}% over {best_feature})")
    print(f"  paper: +{SELECTOR_CLAIM:g}% over its best single benchmark (ANLI, published here for 12 models only), "
          "in-sample; its features and benchmark set differ from these")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("paper_report"), help="report folder (default: %(default)s)")
    args = parser.parse_args()
    out = storage.Location(args.out)

    results = paper_analyses.paper_results()
    stages = paper_analyses.stage_deltas(results)
    gains = paper_analyses.size_group_gains(results)
    bt_vs_regression = paper_analyses.bt_vs_regression(results)
    published = [f for f in selector.DEFAULT_FEATURES if f not in results.columns]
    training = results[results["rm_type"] == "regression"].merge(registry.models()[["name", *published]], on="name")
    features, _ = selector.widely_known(training)
    fitted = selector.fit_selector(training, "score", features)

    print_table1(stages.table)
    print_size_groups(gains.table)
    print_bt_vs_regression(bt_vs_regression.table)
    print_selector(fitted)

    lines = ["# arXiv 2505.10775 reproduced from its published results", "",
             "Scores are the paper's RewardBench four-section means (Tables 4 and 5).", "",
             *report.render_analyses([gains, stages, bt_vs_regression, paper_analyses.scale_curve(results, out),
                                      paper_analyses.coverage_curves(fitted, out)])]
    out.write_text("report.md", "\n".join(lines))
    print(f"\nwrote {args.out / 'report.md'} and its plots")


if __name__ == "__main__":
    main()
