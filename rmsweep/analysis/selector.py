"""The selector: an Elastic Net from cheap benchmark features to reward-model quality (arXiv 2505.10775).

Method (reference/benchmarks.md): standardised features, polynomial degree {1,2,3} x alpha {0.1..1e-4} x
l1_ratio {0..1} chosen by k-fold cross-validation, then refit on all models. Quality of a selector is
coverage@k: the share of the true top-k models that its top-k contains.

The paper's figure is in-sample: the model that ranks was fitted on the very scores it is judged against.
Here every figure also comes out-of-fold: each model is ranked by a selector whose whole fit, grid search
included, never saw that model's score (nested cross-validation). Both are labelled.

Missing feature values are never zero-filled: models lacking one are left out and listed, or imputed with
the feature's median when asked.
"""
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNetCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

DEFAULT_FEATURES = ("mbpp_plus", "humaneval_plus", "toxigen", "ifeval", "params_b")
DEGREES = (1, 2, 3)
ALPHAS = (0.1, 0.01, 0.001, 0.0001)
L1_RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0)
COVERAGE_KS = tuple(range(5, 31))
MIN_MODELS = 3
INTERVAL = (0.1, 0.9)  # quantiles of the out-of-fold errors that bound a candidate's predicted score


def coverage_at_k(predicted, actual, k: int) -> float:
    """|top-k by predicted ∩ top-k by actual| / k; both indexed by model."""
    predicted, actual = pd.Series(predicted), pd.Series(actual)
    return len(set(predicted.nlargest(k).index) & set(actual.nlargest(k).index)) / k


def coverage_curve(predicted, actual, ks=COVERAGE_KS) -> dict:
    return {k: coverage_at_k(predicted, actual, k) for k in ks if k <= len(actual)}


def fit_model(features: pd.DataFrame, target: pd.Series, folds: int = 10, seed: int = 0, impute: bool = False):
    """(refitted pipeline, chosen hyperparameters): the degree, alpha and l1_ratio with the lowest k-fold MSE.

    ElasticNetCV walks each l1_ratio's alpha path with warm starts on the same folds for every degree, which
    is the full grid at a fraction of a grid search's cost.
    """
    cv = KFold(min(folds, len(target)), shuffle=True, random_state=seed)
    best = None
    for degree in DEGREES:
        steps = [SimpleImputer(strategy="median")] if impute else []
        steps += [StandardScaler(), PolynomialFeatures(degree, include_bias=False), StandardScaler(),
                  ElasticNetCV(l1_ratio=L1_RATIOS, alphas=ALPHAS, cv=cv, max_iter=5_000)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # small alphas on few models; the CV judges them
            pipeline = make_pipeline(*steps).fit(features, target)
        net = pipeline[-1]
        mse = float(net.mse_path_.mean(axis=-1).min())
        if best is None or mse < best[1]["cv_mse"]:
            best = (pipeline, {"degree": degree, "alpha": float(net.alpha_), "l1_ratio": float(net.l1_ratio_),
                               "cv_mse": mse})
    return best


def out_of_fold_predictions(features: pd.DataFrame, target: pd.Series, folds: int = 10, seed: int = 0,
                            impute: bool = False) -> pd.Series:
    """Each model predicted by a selector (grid search included) fitted without that model."""
    predictions = pd.Series(np.nan, index=target.index)
    outer = KFold(min(folds, len(target)), shuffle=True, random_state=seed)
    for train, held_out in outer.split(features):
        pipeline, _ = fit_model(features.iloc[train], target.iloc[train], folds, seed, impute)
        predictions.iloc[held_out] = pipeline.predict(features.iloc[held_out])
    return predictions


def correlations(scores: dict, table: pd.DataFrame, sections: dict) -> list[dict]:
    """Pearson and Spearman of each score series (selector or single feature) with each section."""
    rows = []
    for name, values in scores.items():
        for section, column in sections.items():
            pair = pd.concat([values, table[column]], axis=1).dropna()
            if len(pair) < 3:
                continue
            row = {"ranked_by": name, "section": section, "n": len(pair), "pearson": None, "spearman": None}
            if pair.nunique().min() > 1:  # a constant series has no correlation
                row["pearson"] = float(stats.pearsonr(pair.iloc[:, 0], pair.iloc[:, 1])[0])
                row["spearman"] = float(stats.spearmanr(pair.iloc[:, 0], pair.iloc[:, 1])[0])
            rows.append(row)
    return rows


def rank_candidates(pipeline, candidates: pd.DataFrame | None, features: list[str], impute: bool,
                    out_of_fold_errors: pd.Series) -> tuple[list[dict], list[dict]]:
    """The candidates by predicted score, each with an interval from the out-of-fold errors (what the selector's
    predictions missed by, on models whose own scores it never saw); and those it cannot rank, with the
    features they lack."""
    if candidates is None or not len(candidates):
        return [], []
    lacking = candidates[features].isna().any(axis=1) & (not impute)
    rankable = candidates[~lacking]
    predicted = np.asarray(pipeline.predict(rankable[features]) if len(rankable) else [])
    low, high = np.quantile(out_of_fold_errors, [INTERVAL[0], INTERVAL[1]])
    ranking = (rankable.assign(predicted=predicted, low=predicted + low, high=predicted + high)
               .sort_values("predicted", ascending=False, kind="stable")[["name", "predicted", "low", "high"]]
               .to_dict(orient="records"))
    unranked = [{"name": row["name"], "missing": [f for f in features if pd.isna(row[f])]}
                for _, row in candidates[lacking].iterrows()]
    return ranking, unranked


def fit_selector(table: pd.DataFrame, target: str, features=DEFAULT_FEATURES, sections: dict | None = None,
                 candidates: pd.DataFrame | None = None, folds: int = 10, seed: int = 0,
                 impute: bool = False) -> dict:
    """Fit on `table[target]` (one row per model, a `name` column); rank `candidates` by predicted score.

    `sections` maps section names to score columns of `table` for the correlation table (default: target).
    Returns a JSON-ready summary with the fit, coverage (in-sample and out-of-fold) and the ranking.
    """
    features = list(features)
    table = table.dropna(subset=[target]).set_index("name", drop=False)
    lacking = table[table[features].isna().any(axis=1)]
    summary = {
        "target": target, "features": features, "imputed": impute,
        "models_lacking_features": {name: [f for f in features if pd.isna(row[f])] for name, row in lacking.iterrows()},
    }
    if not impute:
        table = table.drop(index=lacking.index)
    summary["n_models"] = len(table)
    if len(table) < MIN_MODELS:
        return {**summary, "status": "skipped",
                "reason": f"needs >= {MIN_MODELS} models with every feature known, has {len(table)}"
                          + ("" if impute else " (impute=True fills gaps with medians)")}

    pipeline, chosen = fit_model(table[features], table[target], folds, seed, impute)
    net = pipeline[-1]
    terms = pipeline[-3].get_feature_names_out(features)
    in_sample = pd.Series(pipeline.predict(table[features]), index=table.index)
    out_of_fold = out_of_fold_predictions(table[features], table[target], folds, seed, impute)
    single = {feature: table[feature] for feature in features}
    actual = table[target]

    ranking, unranked = rank_candidates(pipeline, candidates, features, impute, actual - out_of_fold)
    return {
        **summary, "status": "fitted",
        **chosen,
        "out_of_fold_mean_absolute_error": float((out_of_fold - actual).abs().mean()),
        "coefficients_standardised": {term: float(w) for term, w in zip(terms, net.coef_)},
        "intercept": float(net.intercept_),
        "coverage": {
            "selector_in_sample": coverage_curve(in_sample, actual),
            "selector_out_of_fold": coverage_curve(out_of_fold, actual),
            **{f"feature:{name}": coverage_curve(values, actual) for name, values in single.items()},
        },
        "correlations": correlations({"selector_in_sample": in_sample, "selector_out_of_fold": out_of_fold,
                                      **{f"feature:{n}": v for n, v in single.items()}},
                                     table, sections or {"overall": target}),
        "ranking": ranking,
        "interval": f"{round(100 * (INTERVAL[1] - INTERVAL[0]))}% from the out-of-fold errors",
        "unranked": unranked,
    }


def widely_known(table: pd.DataFrame, features=DEFAULT_FEATURES, share: float = 0.75) -> tuple[list, list]:
    """(features known for at least `share` of the models, the others).

    A feature known for few models would leave too few models to fit once those lacking it are left out.
    """
    known = [f for f in features if table[f].notna().mean() >= share]
    return known, [f for f in features if f not in known]


def mean_coverage(curve: dict, ks=range(5, 11)) -> float:
    """Average coverage over k = 5..10, the span of the paper's headline claim."""
    values = [curve[k] for k in ks if k in curve]
    return float(np.mean(values)) if values else float("nan")


def predicted_quality(table: pd.DataFrame, target: str, names: list[str], seed: int = 0) -> dict:
    """Each named model's `target` as predicted from its widely known cheap features (a prior for the budget-aware
    sweep): out-of-fold for models `table` has a score for (their own score never predicts them), the full fit
    for the others; the median prediction for a model lacking a feature."""
    features, _ = widely_known(table)
    known = table.dropna(subset=[target, *features]).set_index("name")
    predictions = out_of_fold_predictions(known[features], known[target], seed=seed)
    pipeline, _ = fit_model(known[features], known[target], seed=seed)
    others = table[~table["name"].isin(known.index)].dropna(subset=features).set_index("name")
    if len(others):
        predictions = pd.concat([predictions, pd.Series(pipeline.predict(others[features]), index=others.index)])
    median = float(predictions.median())
    return {name: float(predictions.get(name, median)) for name in names}
