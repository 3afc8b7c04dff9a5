"""Fit the base-model selector and rank base models nobody has trained yet.

  python -m rmsweep.select --paper [--target regression|bt]           the paper's published results
  python -m rmsweep.select --results RUN_DIR/best_per_model.csv       a sweep's results
  python -m rmsweep.select --paper --target bt --candidates models.yaml   rank your own candidates

Prints the fitted model, coverage@k (in-sample as the paper reports it, and out-of-fold: the honest
figure) of the selector and of every single feature, and the ranking; writes selector.json.
"""
import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from rmsweep.analysis import feature_values, scoring, selector
from rmsweep.data import candidates, registry
from rmsweep.features import cache
from rmsweep.sweep import atomic, plan, storage, triage


class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rmsweep.select", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", type=Path, metavar="CSV", help="a sweep's best_per_model.csv")
    source.add_argument("--paper", action="store_true", help="fit on the paper's published RewardBench results")
    parser.add_argument("--target", choices=tuple(registry.PAPER_SCORE_PREFIXES), default="regression",
                        help="with --paper: which RM type's scores to fit (default: regression)")
    parser.add_argument("--features", nargs="+", metavar="COLUMN", default=list(selector.DEFAULT_FEATURES),
                        help="registry (or candidates-file) columns to use (default: %(default)s)")
    parser.add_argument("--candidates", type=Path, metavar="CSV|YAML",
                        help="models to rank: a CSV with `name` and the feature columns, or a model-set file "
                             "(docs/candidates.md: registry models get their published features, others their "
                             "parameter count from their config (a folder or the local hub cache) and the features "
                             "python -m rmsweep.features measured; those still lacking one are listed) (default: "
                             "registry models not in the training results)")
    parser.add_argument("--storage", metavar="DIR|URI", default="rmsweep_runs",
                        help="where python -m rmsweep.features cached its measurements (default: ./rmsweep_runs)")
    parser.add_argument("--feature-values", choices=feature_values.CHOICES, default="auto",
                        help="published (the registry's), measured (rmsweep.features', for every model), or auto: "
                        "measured where every model has them, else published, a candidate without any taking its "
                        "measured ones, named (default: auto)")
    parser.add_argument("--impute", action="store_true",
                        help="fill missing feature values with the feature's median instead of leaving models out")
    parser.add_argument("--folds", type=int, default=10, metavar="K", help="cross-validation folds (default: 10)")
    parser.add_argument("--seed", type=int, default=0, metavar="N")
    parser.add_argument("--out", type=Path, default=Path("selector.json"), metavar="FILE",
                        help="where to write the JSON summary (default: selector.json)")
    return parser.parse_args(argv)


def training_table(args) -> tuple[pd.DataFrame, dict]:
    """(one row per model with features and scores, section -> score column; "overall" is the target)."""
    if args.paper:
        return registry.models(), registry.paper_score_columns(args.target)
    try:
        results = pd.read_csv(args.results)
    except (OSError, pd.errors.ParserError) as error:
        raise UsageError(f"cannot read {args.results}: {error}") from None
    sections = scoring.SCORE_COLUMNS["rewardbench"]
    missing = {"model", *sections.values()} - set(results.columns)
    if missing:
        raise UsageError(f"{args.results} lacks column {sorted(missing)[0]!r} (expected a best_per_model.csv)")
    table = registry.with_results(results, sections.values())
    unknown = sorted(set(results["model"]) - set(table["name"]))
    if unknown:
        raise UsageError(f"{args.results}: model {unknown[0]!r} is not in the registry")
    return table, sections


def candidate_table(args, trained: pd.DataFrame) -> pd.DataFrame:
    if args.candidates is None:
        models = registry.models()
        return models[~models["name"].isin(trained["name"])]
    if args.candidates.suffix in (".yaml", ".yml"):
        return model_set_table(args.candidates)
    try:
        return pd.read_csv(args.candidates)
    except (OSError, pd.errors.ParserError) as error:
        raise UsageError(f"cannot read {args.candidates}: {error}") from None


def model_set_table(path: Path) -> pd.DataFrame:
    """A model-set file's candidates as a sweep reads them (`plan.model_set_items`): a registry model under its
    registry name with its published features, any other with its parameter count read from its config (a folder,
    or a hub id in the local cache) and no features (measured ones come from --storage)."""
    try:
        facts = plan.read_candidates(plan.model_set_items(path), local_only=True, trust_remote_code=False)
    except (candidates.CandidateError, plan.UsageError) as error:
        raise UsageError(str(error)) from None
    return triage.candidate_table(facts)


def with_source(table: pd.DataFrame) -> pd.DataFrame:
    """Candidates keyed for measured features by `source` (hub id or folder); a CSV without one by its hub id or
    name."""
    if "source" in table:
        return table
    return table.assign(source=table["hf_id"] if "hf_id" in table else table["name"])


def print_summary(fitted: dict) -> None:
    print(f"selector for {fitted['target']}: {fitted['n_models']} models, features {', '.join(fitted['features'])}")
    values = fitted["feature_values"]
    print(f"  feature values: {values['values']}"
          + (f" ({', '.join(values['measured_for'])}; {values['caution']})" if values.get("measured_for") else ""))
    lacking = fitted["models_lacking_features"]
    if lacking:
        action = "imputed" if fitted["imputed"] else "left out; --impute fills them, --features picks others"
        shown = "; ".join(f"{name} ({', '.join(f)})" for name, f in list(lacking.items())[:5])
        print(f"  {len(lacking)} models lack a feature ({action}): {shown}"
              + (f"; ... (all {len(lacking)} in the JSON)" if len(lacking) > 5 else ""))
    if fitted["status"] != "fitted":
        print(f"  not fitted: {fitted['reason']}")
        return
    print(f"  degree {fitted['degree']}, alpha {fitted['alpha']:g}, l1_ratio {fitted['l1_ratio']:g}, "
          f"out-of-fold MAE {fitted['out_of_fold_mean_absolute_error']:.3g}")
    nonzero = {term: weight for term, weight in fitted["coefficients_standardised"].items() if weight}
    if not nonzero:
        print("  every coefficient is zero: these features do not predict the target here; no ranking to show")
        return
    print("  standardised coefficients: " + ", ".join(f"{term} {weight:+.3g}" for term, weight in nonzero.items()))
    coverage = pd.DataFrame(fitted["coverage"])
    if coverage.empty:
        print(f"\ncoverage@k needs at least 5 models; this fit has {fitted['n_models']}")
    else:
        print("\ncoverage@k (in-sample: the selector was fitted on these scores; out-of-fold: it was not)")
        print(coverage.loc[[k for k in coverage.index if k % 5 == 0]].to_string(float_format="{:.2f}".format))
        print("mean over k=5..10: " + ", ".join(
            f"{name} {selector.mean_coverage(curve):.3f}" for name, curve in fitted["coverage"].items()))
    if fitted["ranking"]:
        print(f"\nranking of candidates by predicted score (low-high: {fitted['interval']})")
        print(pd.DataFrame(fitted["ranking"]).head(15).to_string(index=False, float_format="{:.2f}".format))
    for row in fitted["unranked"]:
        print(f"cannot rank {row['name']}: no {', '.join(row['missing'])}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.folds < 2:
            raise UsageError(f"--folds must be >= 2, got {args.folds}")
        table, sections = training_table(args)
        to_rank = candidate_table(args, table)
        table = table[~table["name"].isin(to_rank["name"])]  # each candidate predicted by a fit blind to its score
        unknown = [f for f in args.features if f not in table.columns or f not in to_rank.columns]
        if unknown:
            raise UsageError(f"unknown feature column {unknown[0]!r} (in the registry or the candidates file)")
    except UsageError as error:
        print(f"rmsweep.select: error: {error}", file=sys.stderr)
        return 2
    measured = cache.measured_features(storage.Location(args.storage))
    table, to_rank, values = feature_values.choose(table.assign(source=table["hf_id"]), with_source(to_rank),
                                                   args.features, measured, args.feature_values)
    fitted = {**selector.fit_selector(table, sections["overall"], args.features, sections, to_rank, args.folds,
                                      args.seed, args.impute), "feature_values": values}
    atomic.write_text(args.out, json.dumps(fitted, indent=2))  # before printing: a closed pipe loses nothing
    print_summary(fitted)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
