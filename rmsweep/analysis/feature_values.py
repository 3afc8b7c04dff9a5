"""Which benchmark-feature values the selector reads: the registry's published ones, or the ones
`python -m rmsweep.features` measured (one harness, one set of settings). They are never mixed silently:

- `published`: the registry's values; a candidate outside the registry has none, so cannot be ranked.
- `measured`: measured values for every model, training and candidates (`--family all` on a cluster measures the
  registry's models, so that the selector can be refitted on them).
- `auto` (default): measured where every model the fit and the ranking need has them; else published, with a
  candidate that has no published value taking its measured one, and the summary naming each such candidate.

Parameter counts are read, not measured: they are the same either way.
"""
import pandas as pd

from rmsweep.features.benchmarks import BENCHMARKS

CHOICES = ("auto", "published", "measured")


def with_measured(table: pd.DataFrame, measured: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The table's benchmark features replaced by the measured values of each row's `source` (NaN: none)."""
    values = measured.reindex(index=table["source"], columns=features)
    return table.assign(**{feature: values[feature].to_numpy() for feature in features})


def choose(training: pd.DataFrame, candidates: pd.DataFrame, features: list[str], measured: pd.DataFrame,
           choice: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(training, candidates, provenance): both tables with the chosen values in the benchmark feature columns
    (each table needs `source`: a hub id or folder), and what was chosen, for selector.json and the report."""
    benchmark_features = [feature for feature in features if feature in BENCHMARKS]
    if not benchmark_features:
        return training, candidates, {"values": "none measured or published: parameter count only"}
    measured_training = with_measured(training, measured, benchmark_features)
    measured_candidates = with_measured(candidates, measured, benchmark_features)
    complete = not (measured_training[benchmark_features].isna().any().any()
                    or measured_candidates[benchmark_features].isna().any().any())
    if choice == "measured" or (choice == "auto" and complete):
        return measured_training, measured_candidates, {"values": "measured (python -m rmsweep.features)"}
    if choice == "published":
        return training, candidates, {"values": "published (the registry's)"}
    lacking = candidates[benchmark_features].isna().any(axis=1)
    filled = candidates.copy()
    filled.loc[lacking, benchmark_features] = measured_candidates.loc[lacking, benchmark_features]
    borrowed = sorted(filled.loc[lacking & filled[benchmark_features].notna().all(axis=1), "name"])
    provenance = {"values": "published (the registry's)"}
    if borrowed:
        provenance = {"values": "published, except candidates without any: measured",
                      "measured_for": borrowed,
                      "caution": "measured and published values come from different harnesses and settings; "
                                 "re-measure the training models (python -m rmsweep.features --family all) to "
                                 "fit on one kind"}
    return training, filled, provenance
