"""The ledger module: trials.csv read back as written, the best trial per model, compute, and the counts that
`rmsweep.status` prints (a finished --budget sweep has no pending trials)."""
import pandas as pd

from rmsweep.cli import status
from rmsweep.sweep import ledger, storage

ROWS = [
    {"trial_id": "t1", "model": "a", "lr": 1e-3, "epochs": 1, "status": "completed", "steps": 64,
     "best_val_accuracy": 0.90, "wall_seconds": 36.0, "gpus": 0.0, "workers": 1, "checkpoint": "/c1"},
    {"trial_id": "t2", "model": "a", "lr": 1e-4, "epochs": 1, "status": "stopped_early", "steps": 32,
     "best_val_accuracy": 0.93, "wall_seconds": 18.0, "gpus": 0.0, "workers": 1, "checkpoint": None},
    {"trial_id": "t3", "model": "b", "lr": 1e-3, "epochs": 2, "status": "completed", "steps": 128,
     "best_val_accuracy": 0.80, "wall_seconds": 72.0, "gpus": 2.0, "workers": 2, "checkpoint": "/c3"},
    {"trial_id": "t4", "model": "b", "lr": 3e-3, "epochs": 1, "status": "diverged", "steps": 8,
     "best_val_accuracy": None, "wall_seconds": 9.0, "gpus": 2.0, "workers": 2, "checkpoint": None},
]


def test_the_ledger_reads_back_what_was_written(tmp_path):
    run_dir = storage.Location(tmp_path)
    assert ledger.read(run_dir).empty
    ledger.write(run_dir, ROWS, "bt")
    table = ledger.read(run_dir)
    assert list(table["trial_id"]) == ["t1", "t2", "t3", "t4"] and set(table["rm_type"]) == {"bt"}
    assert ledger.rows(table)[3]["best_val_accuracy"] is None


def test_curves_read_back_what_was_written(tmp_path):
    run_dir = storage.Location(tmp_path)
    assert ledger.read_curves(run_dir) == []
    points = [{"trial_id": "t1", "model": "a", "lr": 1e-3, "epochs": 1, "step": step, "val_accuracy": 0.8 + step / 1000,
               "tokens": 1000 * step, "wall_seconds": 2.0 * step} for step in (16, 32)]
    ledger.write_curves(run_dir, points)
    assert ledger.read_curves(run_dir) == points


def test_best_per_model_and_compute():
    trials = pd.DataFrame(ROWS)
    assert ledger.best_per_model(trials).set_index("model")["trial_id"].to_dict() == {"a": "t2", "b": "t3"}
    # What gets scored must have a checkpoint: t2 is better but has none.
    assert ledger.best_per_model(trials, with_checkpoint=True).set_index("model")["trial_id"].to_dict() == {
        "a": "t1", "b": "t3"}
    assert ledger.gpu_hours(trials) == (72.0 * 2 + 9.0 * 2) / 3600
    assert ledger.worker_hours(trials) == (36.0 + 18.0 + 72.0 * 2 + 9.0 * 2) / 3600


def _record(**changes) -> dict:
    return {"name": "qwen2.5-bt-tiny", "family": "qwen2.5", "rm_type": "bt", "scale": "tiny",
            "models": {"m1": {}, "m2": {}, "m3": {}, "m4": {}}, "samples_per_model": 4, "budget_steps": None,
            "started": "2026-11-30T10:00:00", "started_unix": 0.0, **changes}


def test_status_counts_pending_trials_of_a_running_sweep(tmp_path):
    text = status.summary(_record(), pd.DataFrame(ROWS), storage.Location(tmp_path))
    assert "trials: 4 of 16 finished; 2 completed, 1 stopped_early, 1 diverged, 12 pending" in text


def test_status_of_a_finished_budget_sweep_has_no_pending_trials(tmp_path):
    """A --budget 400 sweep that ran 4 trials and finished: the budget decided there were 4, none pending."""
    record = _record(budget_steps=400, finished="2026-11-30T10:05:00", wall_seconds=300.0)
    text = status.summary(record, pd.DataFrame(ROWS), storage.Location(tmp_path))
    assert "trials: 4 (a budget of 400 trial-steps decides how many; 232 spent) finished;" in text
    assert "pending" not in text and "finished, 5.0 min" in text
    assert f"compute so far: {162 / 3600:.2f} GPU-hours" in text  # 72 s x 2 GPUs + 9 s x 2
