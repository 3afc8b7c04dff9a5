import numpy as np
import pandas as pd
import pytest

from rmsweep.analysis import selector
from rmsweep.data import registry

FEATURES = ["mbpp_plus", "toxigen", "ifeval", "params_b"]


def _table(n=30, seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "name": [f"m{i}" for i in range(n)],
        "mbpp_plus": rng.normal(50, 10, n), "toxigen": rng.normal(40, 5, n),
        "ifeval": rng.normal(60, 10, n), "params_b": rng.uniform(0.5, 10, n),
    })
    table["score"] = 0.5 * table["ifeval"] + 2.0 * table["params_b"] + rng.normal(0, 0.1, n)
    return table


def test_coverage_at_k_on_a_hand_built_ranking():
    actual = pd.Series({"a": 5, "b": 4, "c": 3, "d": 2, "e": 1})
    predicted = pd.Series({"a": 1, "b": 9, "c": 2, "d": 8, "e": 0})  # top-2 {b, d}; truly {a, b}
    assert selector.coverage_at_k(predicted, actual, 2) == 0.5
    assert selector.coverage_at_k(predicted, actual, 3) == pytest.approx(2 / 3)  # {b, d, c} vs {a, b, c}
    assert selector.coverage_at_k(predicted, actual, 4) == 1.0  # {b, d, c, a} vs {a, b, c, d}
    assert selector.coverage_curve(predicted, actual, ks=(2, 5, 6)) == {2: 0.5, 5: 1.0}


def test_recovers_a_planted_linear_relation_and_ranks_candidates():
    table = _table()
    fitted = selector.fit_selector(table, "score", FEATURES, candidates=table)
    assert fitted["status"] == "fitted" and fitted["degree"] == 1
    weights = fitted["coefficients_standardised"]
    assert weights["ifeval"] > 1 and weights["params_b"] > 1
    assert abs(weights["mbpp_plus"]) < 0.5 and abs(weights["toxigen"]) < 0.5
    assert fitted["out_of_fold_mean_absolute_error"] < 1.0
    assert fitted["coverage"]["selector_out_of_fold"][10] >= 0.9
    predicted = [row["name"] for row in fitted["ranking"][:5]]
    assert predicted == list(table.sort_values("score", ascending=False)["name"][:5])


def test_out_of_fold_prediction_never_uses_the_models_own_score():
    table = _table(n=20)
    features, target = table[FEATURES], table["score"]
    before = selector.out_of_fold_predictions(features, target, folds=5)
    changed = target.copy()
    changed.iloc[3] += 1000.0  # only model 3's own score changes
    after = selector.out_of_fold_predictions(features, changed, folds=5)
    assert after.iloc[3] == pytest.approx(before.iloc[3])
    assert not np.allclose(after.drop(index=3), before.drop(index=3))  # the others did see it


def test_models_missing_a_feature_are_listed_and_left_out_never_zero_filled():
    table = _table()
    table.loc[[0, 1], "toxigen"] = np.nan
    fitted = selector.fit_selector(table, "score", FEATURES)
    assert fitted["models_lacking_features"] == {"m0": ["toxigen"], "m1": ["toxigen"]}
    assert fitted["n_models"] == 28
    imputed = selector.fit_selector(table, "score", FEATURES, impute=True)
    assert imputed["n_models"] == 30 and imputed["imputed"]


def test_too_few_models_is_reported_not_fitted():
    fitted = selector.fit_selector(_table(n=2), "score", FEATURES)
    assert fitted["status"] == "skipped" and "has 2" in fitted["reason"]


def test_widely_known_features():
    table = _table(n=8)
    table.loc[:6, "mbpp_plus"] = np.nan
    assert selector.widely_known(table, FEATURES) == (["toxigen", "ifeval", "params_b"], ["mbpp_plus"])


def test_correlations_per_section_and_undefined_for_a_constant_series():
    table = _table()
    rows = selector.correlations({"good": table["score"], "flat": pd.Series(1.0, index=table.index)}, table,
                                 {"overall": "score"})
    good, flat = rows
    assert good["pearson"] == pytest.approx(1.0) and good["spearman"] == pytest.approx(1.0)
    assert flat["pearson"] is None and flat["spearman"] is None


def test_the_budget_prior_predicts_each_model_without_its_own_score():
    table = registry.models()
    target = registry.paper_score_columns("bt")["overall"]
    names = ["Qwen2.5-0.5B-Instruct", "Qwen2.5-7B-Instruct", "gemma-2-9b-it"]
    prior = selector.predicted_quality(table, target, names)
    assert set(prior) == set(names) and all(np.isfinite(list(prior.values())))
    assert prior["Qwen2.5-7B-Instruct"] > prior["Qwen2.5-0.5B-Instruct"]  # the larger, stronger model
    # Out-of-fold: changing a model's own published score leaves its prediction unchanged.
    shifted = table.assign(**{target: table[target].where(table["name"] != "gemma-2-9b-it", 0.0)})
    assert selector.predicted_quality(shifted, target, ["gemma-2-9b-it"])["gemma-2-9b-it"] == pytest.approx(
        prior["gemma-2-9b-it"], abs=1e-9)
