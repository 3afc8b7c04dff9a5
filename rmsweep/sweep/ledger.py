"""The trial ledger, `trials.csv`: one row per trial (running ones included), rewritten whole at every change.

Beside it, `curves.parquet`: every evaluation of every trial. This module is the one place that reads and
writes them, and that says what they add up to: the best trial per base model, the compute used, the trials
finished and still expected. The aggregator, `rmsweep.status`, the report and `--resume` all go through here.
"""
import io
import json

import pandas as pd

from rmsweep.sweep import storage

FILE = "trials.csv"
CURVES = "curves.parquet"  # every evaluation of every trial: trial_id, model, lr, epochs, step, val_accuracy,
# tokens (trained so far, all ranks), wall_seconds (since the trial started)
STATUSES = ("running", "interrupted", "completed", "stopped_early", "diverged", "out_of_memory", "error")
FAILED = ("error", "diverged", "out_of_memory")
CONTINUED = ("running", "interrupted")  # what --resume continues from the trial's latest checkpoint
COLUMNS = ["trial_id", "model", "lr", "epochs", "status", "stopped_early", "steps", "total_steps",
           "best_val_accuracy", "wall_seconds", "gpus", "workers", "rm_type"]


def write(run_dir: storage.Location, rows: list[dict], rm_type: str) -> pd.DataFrame:
    """Replace trials.csv with these rows (written whole: a reader never sees half a file); returns the table."""
    table = pd.DataFrame(rows).assign(rm_type=rm_type)
    run_dir.write_text(FILE, table.to_csv(index=False))
    return table


def read(run_dir: storage.Location) -> pd.DataFrame:
    """The ledger; an empty one (with its main columns) before the first trial starts."""
    if not run_dir.exists(FILE):
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(io.StringIO(run_dir.read_text(FILE)))


def write_curves(run_dir: storage.Location, evaluations: list[dict]) -> None:
    """Replace curves.parquet with these evaluations (one row each), written whole."""
    buffer = io.BytesIO()
    pd.DataFrame(evaluations).to_parquet(buffer, index=False)
    run_dir.write_bytes(CURVES, buffer.getvalue())


def read_curves(run_dir: storage.Location) -> list[dict]:
    """The evaluations recorded so far (none before the first)."""
    if not run_dir.exists(CURVES):
        return []
    return pd.read_parquet(io.BytesIO(run_dir.read_bytes(CURVES))).to_dict("records")


def rows(table: pd.DataFrame) -> list[dict]:
    """The ledger as records, missing values as None (as the running sweep keeps them)."""
    return table.astype(object).where(table.notna(), None).to_dict("records")


def best_per_model(trials: pd.DataFrame, with_checkpoint: bool = False) -> pd.DataFrame:
    """Each base model's trial with the best validation accuracy (with a checkpoint, when asked: what is scored)."""
    scored = trials.dropna(subset=["best_val_accuracy"])
    if with_checkpoint:
        scored = scored.dropna(subset=["checkpoint"])
    if scored.empty:
        return scored
    return scored.loc[scored.groupby("model")["best_val_accuracy"].idxmax()]


def held_seconds(trials: pd.DataFrame) -> pd.Series:
    """Each trial's time holding its workers' resources: from its training loop's start on, not the time its
    worker group waited for them (ledgers written before rmsweep told the two apart: the wall time)."""
    if "held_seconds" not in trials:
        return trials["wall_seconds"]
    return trials["held_seconds"].fillna(trials["wall_seconds"])


def gpu_hours(trials: pd.DataFrame) -> float:
    """GPUs x time holding them, summed over trials."""
    return float((held_seconds(trials) * trials["gpus"]).sum() / 3600) if len(trials) else 0.0


def worker_hours(trials: pd.DataFrame) -> float:
    """Workers x time holding them: the compute of a sweep on CPU workers."""
    return float((held_seconds(trials) * trials["workers"]).sum() / 3600) if len(trials) else 0.0


def counts(trials: pd.DataFrame, expected: int | None, finished_sweep: bool) -> dict:
    """Trials per status, with `pending` for those not started yet. `expected` is None for a budget-aware
    sweep: the budget decides how many trials there are, so none is pending once the sweep has finished."""
    by_status = {status: int(n) for status, n in trials["status"].value_counts().items()}
    if expected is not None and not finished_sweep:
        by_status["pending"] = max(0, expected - len(trials))
    return by_status


def expected_trials(record: dict) -> int | None:
    """From sweep.json: the trials the sweep will run, or None where a budget decides."""
    if record.get("budget_steps"):
        return None
    return len(record["models"]) * record["samples_per_model"]


def resumable_rows(run_dir: storage.Location, stored: dict, current: dict, fields) -> list[dict]:
    """The interrupted run's ledger, after checking that `current` (this run's record) is the same sweep as
    `stored` (its sweep.json) in every one of `fields`; raises ValueError naming the first that differs."""
    for key in fields:
        if stored.get(key) != json.loads(json.dumps(current[key], default=str)):
            raise ValueError(f"--resume: {key} differs from the interrupted sweep's (in {run_dir}/sweep.json); "
                             "resume with the flags it was started with, or start a new --name")
    return rows(read(run_dir).drop(columns="rm_type", errors="ignore"))
