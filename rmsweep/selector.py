"""The selector: an Elastic Net from cheap benchmark features to reward-model quality (arXiv 2505.10775).

First version: standardised features, alpha x l1_ratio chosen by k-fold cross-validation, refit on all
models, ranking of models that were not trained. Features missing for any training model are left out and
listed; nothing is zero-filled.
"""
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_FEATURES = ("mbpp_plus", "humaneval_plus", "toxigen", "ifeval", "params_b")
GRID = {"elasticnet__alpha": [0.1, 0.01, 0.001, 0.0001], "elasticnet__l1_ratio": [0.0, 0.25, 0.5, 0.75, 1.0]}
MIN_MODELS = 3


def fit_selector(training: pd.DataFrame, target: str, candidates: pd.DataFrame,
                 features=DEFAULT_FEATURES, seed: int = 0) -> dict:
    """Fit on `training[target]`; rank `candidates` (rows with every used feature) by predicted score."""
    usable = [f for f in features if training[f].notna().all()]
    dropped = [f for f in features if f not in usable]
    summary = {"target": target, "n_models": len(training), "features": usable, "features_left_out": dropped}
    if len(training) < MIN_MODELS or not usable:
        return {**summary, "status": "skipped",
                "reason": f"needs >= {MIN_MODELS} models and one feature known for all; has {len(training)} "
                          f"models and usable features {usable}"}
    folds = KFold(n_splits=min(10, len(training)), shuffle=True, random_state=seed)
    search = GridSearchCV(make_pipeline(StandardScaler(), ElasticNet(max_iter=50_000)), GRID, cv=folds,
                          scoring="neg_mean_absolute_error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(training[usable], training[target])
    net = search.best_estimator_.named_steps["elasticnet"]
    rankable = candidates.dropna(subset=usable)
    predicted = search.best_estimator_.predict(rankable[usable]) if len(rankable) else np.array([])
    ranking = (rankable.assign(predicted=predicted).sort_values("predicted", ascending=False)
               [["name", "size_group", "predicted"]])
    return {
        **summary, "status": "fitted",
        "alpha": search.best_params_["elasticnet__alpha"], "l1_ratio": search.best_params_["elasticnet__l1_ratio"],
        "cv_mean_absolute_error": float(-search.best_score_),
        "coefficients_standardised": dict(zip(usable, map(float, net.coef_))),
        "intercept": float(net.intercept_),
        "ranking": ranking.to_dict(orient="records"),
    }
