import numpy as np
import pandas as pd
import pytest

from rmsweep import selector


def _table(n=30, seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "name": [f"m{i}" for i in range(n)], "size_group": "<3B",
        "mbpp_plus": rng.normal(50, 10, n), "humaneval_plus": np.nan, "toxigen": rng.normal(40, 5, n),
        "ifeval": rng.normal(60, 10, n), "params_b": rng.uniform(0.5, 10, n),
    })
    table["score"] = 0.5 * table["ifeval"] + 2.0 * table["params_b"] + rng.normal(0, 0.1, n)
    return table


def test_recovers_a_planted_linear_relation_and_ranks_candidates():
    table = _table()
    fitted = selector.fit_selector(table, "score", table)
    assert fitted["status"] == "fitted"
    assert fitted["features_left_out"] == ["humaneval_plus"]  # missing for all: listed, never zero-filled
    weights = fitted["coefficients_standardised"]
    assert weights["ifeval"] > 1 and weights["params_b"] > 1
    assert abs(weights["mbpp_plus"]) < 0.5 and abs(weights["toxigen"]) < 0.5
    assert fitted["cv_mean_absolute_error"] < 1.0
    predicted = [row["name"] for row in fitted["ranking"][:5]]
    assert predicted == list(table.sort_values("score", ascending=False)["name"][:5])


def test_too_few_models_is_reported_not_fitted():
    table = _table(n=2)
    fitted = selector.fit_selector(table, "score", table)
    assert fitted["status"] == "skipped" and "has 2 models" in fitted["reason"]


def test_candidates_missing_a_used_feature_are_not_ranked():
    table = _table()
    candidates = table.head(3).copy()
    candidates.loc[0, "ifeval"] = np.nan
    ranked = [row["name"] for row in selector.fit_selector(table, "score", candidates)["ranking"]]
    assert sorted(ranked) == ["m1", "m2"]


@pytest.mark.parametrize("n", [3, 5])
def test_folds_shrink_with_few_models(n):
    assert selector.fit_selector(_table(n=n), "score", _table(n=n))["status"] == "fitted"
