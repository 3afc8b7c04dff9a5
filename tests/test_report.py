import pandas as pd
import pytest

from rmsweep.analysis import report
from rmsweep.sweep import storage

from conftest import sweep_config

TRIALS = pd.DataFrame({
    "model": ["a", "a", "b"], "lr": [1e-3, 1e-4, 1e-3], "epochs": [1, 2, 1],
    "status": ["completed", "stopped_early", "completed"], "stopped_early": [False, True, False],
    "steps": [64, 16, 64], "total_steps": [64, 128, 64], "best_val_accuracy": [0.9, 0.6, 0.8],
    "wall_seconds": [30.0, 20.0, 30.0], "train_truncated": [0, 0, 0], "train_dropped": [0, 0, 0],
    "tokens_per_second": [5e4, 5e4, 6e4], "gpus": [1.0, 1.0, 2.0], "nodes": ["a1b2c3d4"] * 3,
    "startup_seconds": [3.0, 5.0, 4.0], "eval_seconds": [2.0, 1.0, 2.0], "ray_overhead_seconds": [6.0, 8.0, 7.0],
})
BEST = pd.DataFrame({column: [0.9] for column in report.BEST_COLUMNS}
                    | {"model": ["a"], "size_group": ["<3B"], "family": ["f"], "stage": ["sft"], "rm_type": ["bt"]})
FITTED = {"fitted_on": "the paper", "status": "fitted", "n_models": 40, "features": ["ifeval"],
          "features_left_out": ["toxigen"], "models_lacking_features": {"x": ["ifeval"]}, "degree": 1, "alpha": 0.1,
          "l1_ratio": 0.5, "out_of_fold_mean_absolute_error": 3.2, "coefficients_standardised": {"ifeval": 0.4},
          "coverage": {"selector_in_sample": {5: 0.6}, "selector_out_of_fold": {5: 0.4}},
          "ranking": [{"name": "c", "predicted": 70.0}]}


@pytest.mark.parametrize("selector, expected", [
    (FITTED, "Top predicted base models not in this sweep"),
    ({**FITTED, "coefficients_standardised": {"ifeval": 0.0}}, "Every coefficient is zero"),
    ({"fitted_on": "this sweep", "status": "skipped", "reason": "needs >= 3 models"}, "Not fitted on this sweep"),
])
def test_report_states_what_the_selector_found(tmp_path, selector, expected):
    report.write_report(storage.Location(tmp_path), sweep_config(tmp_path), TRIALS, BEST, selector)
    text = (tmp_path / "report.md").read_text()
    assert expected in text
    # 30 + 20 + 2 x 30 GPU-seconds
    assert "3 trials (2 completed, 1 stopped_early)" in text and "0.03 GPU-hours" in text
    assert (tmp_path / "lr_sensitivity.png").stat().st_size > 0
    assert "### lr and epochs sensitivity per base model" in text
    assert "Bradley-Terry vs regression reward models of the same base model: needs results of both" in text


def test_budget_and_time_are_reported_per_base_model():
    spent = report.spending_per_model(TRIALS).set_index("model")
    assert spent.loc["a", "trials"] == 2 and spent.loc["a", "trial_steps"] == 80
    assert spent.loc["b", "gpu_hours"] == pytest.approx(60 / 3600)
    assert spent.loc["a", "median_ray_overhead_seconds"] == 7.0 and spent.loc["a", "median_startup_seconds"] == 4.0
