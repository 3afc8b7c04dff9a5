"""A recorded sweep as a tabular benchmark: strategies run on the curves a real sweep wrote (curves.parquet), each
simulated trial reporting the recorded evaluations of its (model, lr, epochs); the truth is the recorded validation
accuracy (in points, as the simulator's scores). A recording serves the points it ran to their end: a full grid
without early stopping (`--sampler grid`, every point of a list-valued space) serves every strategy on that grid.
"""
import json
from pathlib import Path

import pandas as pd

from rmsweep.config import TrainingSettings
from rmsweep.simulate.trial import report
from rmsweep.sweep import ledger, storage
from rmsweep.sweep.search import METRIC
from rmsweep.sweep.spaces import SearchSpace


class ReplayError(ValueError):
    """A recording that cannot serve a replay; the message says why."""


class Replay:
    def __init__(self, run_dir: str):
        location = storage.Location(run_dir)
        if not location.exists("sweep.json") or not location.exists(ledger.CURVES):
            raise ReplayError(f"{run_dir}: no sweep.json and curves.parquet: not the run directory of a sweep")
        record = json.loads(location.read_text("sweep.json"))
        described = record["space"]
        if described["lr_is_range"]:
            raise ReplayError(f"{run_dir}: its lr is a range; a replay needs a grid (a list of learning rates)")
        self.rm_type, self.train_examples = record["rm_type"], record["train_examples"]
        self.space = SearchSpace(Path(described["file"]), tuple(described["lr"]), False, tuple(described["epochs"]),
                                 TrainingSettings(**described["training"]), described["asha"], None)
        trials = ledger.read(location)
        full = trials[trials["status"] == "completed"].drop_duplicates(["model", "lr", "epochs"])
        curves = pd.DataFrame(ledger.read_curves(location)).merge(full[["trial_id", "total_steps"]], on="trial_id")
        self._curves = {key: group.sort_values("step") for key, group in curves.groupby(["model", "lr", "epochs"])}
        self.models = sorted(full["model"].unique())
        missing = [(model, lr, epochs) for model in self.models for lr in self.space.lr
                   for epochs in self.space.epochs if (model, lr, epochs) not in self._curves]
        if missing:
            raise ReplayError(f"{run_dir}: no completed trial of {missing[0][0]} at lr={missing[0][1]:g}, "
                              f"epochs={missing[0][2]} (and {len(missing) - 1} more points): replay needs the "
                              "whole grid run to its end (--sampler grid, no early stopping)")

    @property
    def steps_per_epoch(self) -> int:
        return self.train_examples // self.space.training.global_batch_size

    def reports(self, sampled: dict) -> list[dict]:
        curve = self._curves[(sampled["model"], sampled["lr"], sampled["epochs"])]
        best, reports = 0.0, []
        for row in curve.itertuples():
            best = max(best, row.val_accuracy)
            reports.append(report(int(row.step), int(row.total_steps), self.steps_per_epoch, row.val_accuracy, best))
        return reports

    def true_score(self, model: str, lr: float, epochs: int, step: int, total_steps: int) -> float:
        curve = self._curves[(model, lr, epochs)]
        return 100 * float(curve.loc[curve["step"] == step, METRIC].iloc[0])

    def best_true(self, model: str) -> float:
        return 100 * float(max(curve[METRIC].max() for (name, _, _), curve in self._curves.items() if name == model))
