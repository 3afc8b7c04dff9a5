"""The aggregator: a named Ray actor that keeps the sweep's ledger and turns it into results.

During the sweep it receives every trial's progress and every finished trial (from `progress.LedgerCallback`),
rewrites `trials.csv` and `curves.parquet` whole (running trials included, with status `running`) at each finished
trial and at most once a second in between (a sweep of fast trials would otherwise spend its time rewriting them
at every evaluation), and publishes the
sweep's progress as Ray metrics (the dashboard's Metrics view, Prometheus): trials per status, the best
validation accuracy per base model, training tokens per second per running trial. At the end it scores each
base model's best checkpoint on the sweep's benchmarks (one Ray task per model, so a cluster scores them in
parallel; a regression RM's attribute weights are searched on the validation pairs first), saves every
per-completion score under `scores/`, fits the selector and writes the run directory's outputs.
"""
import json
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs
import ray
import ray.train
import torch
from ray.util.metrics import Gauge

from rmsweep.analysis import evaluation, report, scoring, selector
from rmsweep.config import SweepConfig
from rmsweep.data import registry
from rmsweep.model import reward_model
from rmsweep.sweep import ledger, storage
from rmsweep.sweep.plan import AGGREGATOR_PREFIX
from rmsweep.training.loop import TRAINER_STATE

PROGRESS_WRITE_INTERVAL_S = 1.0  # the ledger and curves lag a running trial's progress by at most this


def actor_name(run_name: str) -> str:
    return AGGREGATOR_PREFIX + run_name


def prune_other_checkpoints(kept: str) -> int:
    """Delete a finished trial's checkpoints other than `kept` (local path or URI), and the resume state in
    `kept`, which only an unfinished trial needs; returns how many checkpoints were deleted.

    Ray Train keeps the best and the latest, and a trial stopped by ASHA while uploading can leave one more.
    """
    filesystem, kept_path = pyarrow.fs.FileSystem.from_uri(kept)
    resume_state = f"{kept_path.rstrip('/')}/{TRAINER_STATE}"
    if filesystem.get_file_info(resume_state).type == pyarrow.fs.FileType.File:
        filesystem.delete_file(resume_state)
    parent = kept_path.rstrip("/").rsplit("/", 1)[0]
    others = [info.path for info in filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
              if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_")
              and info.path.rstrip("/") != kept_path.rstrip("/")]
    for path in others:
        filesystem.delete_dir(path)
    return len(others)


@ray.remote
def score_checkpoint(checkpoint_path: str, benchmark_data: dict, weights_choice: str, max_length: int) -> dict:
    """One checkpoint's score rows and results on each benchmark; for regression RMs, the weights used."""
    with ray.train.Checkpoint(checkpoint_path).as_directory() as directory:
        tokenizer, model, meta = reward_model.load_checkpoint(Path(directory))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    weights = None
    if meta["rm_type"] == "regression":
        weights = evaluation.regression_weights(model, tokenizer, benchmark_data["validation"], weights_choice,
                                              max_length, device)
    scored = {"weights": weights, "rows": {}, "results": {}}
    for benchmark, groups in benchmark_data["benchmarks"].items():
        rows = evaluation.score_groups(model, tokenizer, groups, max_length, device, weights and weights["weights"])
        scored["rows"][benchmark] = rows
        scored["results"][benchmark] = scoring.SCORERS[benchmark](rows)
    return scored


@ray.remote(num_cpus=0)
class Aggregator:
    def __init__(self, sweep: SweepConfig, evaluation_ref: list, finished: list[dict] = ()):
        self._run_dir = storage.Location(sweep.run_dir)
        self._sweep = sweep
        # In a list so that Ray passes the reference on to the scoring tasks instead of resolving it here.
        self._evaluation = evaluation_ref[0]
        self._trials: list[dict] = list(finished)  # finished, including those of an interrupted run (--resume)
        self._curves: list[dict] = ledger.read_curves(self._run_dir)  # an interrupted run's too
        self._running: dict[str, dict] = {}  # trial id -> latest progress row
        self._written_at = 0.0  # when the ledger and curves were last written
        tags = {"run": sweep.name}
        self._trial_counts = Gauge("rmsweep_trials", "Trials of the sweep, by status", tag_keys=("run", "status"))
        self._best = Gauge("rmsweep_best_val_accuracy", "Best validation accuracy of a base model so far",
                           tag_keys=("run", "model"))
        self._throughput = Gauge("rmsweep_tokens_per_second", "Training tokens per second of a running trial",
                                 tag_keys=("run", "model", "trial"))
        for gauge in (self._trial_counts, self._best, self._throughput):
            gauge.set_default_tags(tags)

    def trial_progress(self, row: dict, evaluation: dict | None = None) -> None:
        """A running trial's latest ledger row, and its evaluation's point on the trial's curve (curves.parquet)."""
        self._running[row["trial_id"]] = row
        if evaluation is not None:
            self._curves.append(evaluation)
        if row["tokens_per_second"] is not None:
            self._throughput.set(row["tokens_per_second"], {"model": row["model"], "trial": row["trial_id"]})
        if row["status"] != "running" or time.monotonic() - self._written_at >= PROGRESS_WRITE_INTERVAL_S:
            self._write_ledger()

    def record_trial(self, row: dict) -> None:
        self._running.pop(row["trial_id"], None)
        self._throughput.set(0.0, {"model": row["model"], "trial": row["trial_id"]})
        self._trials.append(row)
        # The ledger first: a driver killed between the two must not leave a trial marked running whose resume
        # state is already pruned (--resume would continue it from a checkpoint without one).
        self._write_ledger()
        if row["checkpoint"] and self._sweep.keep_checkpoints != "all":
            prune_other_checkpoints(row["checkpoint"])

    def summary(self) -> str:
        """The sweep at a glance; also the actor's repr, which the dashboard's Actors view shows."""
        finished = pd.DataFrame(self._trials)
        best = {} if finished.empty else ledger.best_per_model(finished).set_index("model")["best_val_accuracy"]
        return (f"rmsweep {self._sweep.name}: {len(self._trials)}/{self._sweep.expected_trials or '?'} trials done, "
                f"{len(self._running)} running; best "
                + (", ".join(f"{model} {value:.3f}" for model, value in dict(best).items()) or "-"))

    __repr__ = summary

    def _write_ledger(self) -> None:
        """trials.csv and curves.parquet, written whole, and the metrics."""
        self._written_at = time.monotonic()
        if self._curves:
            ledger.write_curves(self._run_dir, self._curves)
        table = ledger.write(self._run_dir, [*self._trials, *self._running.values()], self._sweep.rm_type)
        counts = table["status"].value_counts()
        for status in ledger.STATUSES:  # zeros too: the last running trial's end must bring "running" to 0
            self._trial_counts.set(int(counts.get(status, 0)), {"status": status})
        for model, best in table.groupby("model")["best_val_accuracy"].max().dropna().items():
            self._best.set(best, {"model": model})

    def write_interrupted(self, resume_command: str) -> str:
        """The ledger and a report marked interrupted (nothing scored); returns the report's first line."""
        self._write_ledger()
        trials = pd.DataFrame([*self._trials, *self._running.values()]).assign(rm_type=self._sweep.rm_type)
        return report.write_interrupted_report(self._run_dir, self._sweep, trials, len(self._trials),
                                               resume_command)

    def finalize(self) -> pd.DataFrame:
        """Score the best trial of each base model, fit the selector, write every output; returns the table."""
        trials = pd.DataFrame(self._trials).assign(rm_type=self._sweep.rm_type)
        best = ledger.best_per_model(trials, with_checkpoint=True)
        gpus = max(placement.gpus_per_worker for placement in self._sweep.placements.values())
        scorer = score_checkpoint.options(num_gpus=min(1.0, gpus))
        scores = ray.get([scorer.remote(path, self._evaluation, self._sweep.regression_weights,
                                        self._sweep.training.max_length) for path in best["checkpoint"]])
        scores_dir = self._run_dir.child("scores")
        for model, score in zip(best["model"], scores):
            for benchmark, rows in score["rows"].items():
                scores_dir.write_text(f"{model}-{benchmark}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
        best_per_model = self._best_per_model(best, scores)
        self._run_dir.write_text("best_per_model.csv", best_per_model.to_csv(index=False))

        fitted = self._fit_selector(best_per_model)
        self._run_dir.write_text("selector.json", json.dumps(fitted, indent=2))
        if self._sweep.keep_checkpoints == "none":  # scored and saved under scores/: the weights can go
            self._run_dir.child("checkpoints").remove()
            self._trials = [{**row, "checkpoint": None} for row in self._trials]
            self._write_ledger()
            trials, best_per_model = trials.assign(checkpoint=None), best_per_model.assign(checkpoint=None)
            self._run_dir.write_text("best_per_model.csv", best_per_model.to_csv(index=False))
        report.write_report(self._run_dir, self._sweep, trials, best_per_model, fitted)
        return best_per_model

    def _best_per_model(self, best: pd.DataFrame, scores: list[dict]) -> pd.DataFrame:
        rows = []
        for (_, trial), score in zip(best.iterrows(), scores):
            fact = self._sweep.facts[trial["model"]]
            row = {
                "model": trial["model"], "source": fact.entry.source, "revision": fact.entry.revision,
                "family": fact.entry.family, "params_b": fact.params_b, "size_group": fact.size_group,
                "stage": fact.entry.stage, "architecture": fact.architecture, "published_facts": fact.published,
                "chat_format": "template" if fact.has_chat_template else "plain",
                "rm_type": self._sweep.rm_type, "scale": self._sweep.scale, "best_lr": trial["lr"],
                "best_epochs": trial["epochs"], "val_accuracy": trial["best_val_accuracy"],
            }
            if score["weights"]:
                row["regression_weights"] = " ".join(f"{w:g}" for w in score["weights"]["weights"])
                row["weighted_val_accuracy"] = score["weights"]["accuracy"]
            for benchmark, result in score["results"].items():
                columns = scoring.SCORE_COLUMNS[benchmark]
                row.update({column: result["sections"].get(section) for section, column in columns.items()
                            if section != "overall"})
                row[columns["overall"]] = result["overall"]
            rows.append({**row, "trial_id": trial["trial_id"], "checkpoint": trial["checkpoint"]})
        headline = scoring.SCORE_COLUMNS[self._sweep.benchmarks[0]]["overall"]
        return pd.DataFrame(rows).sort_values(headline, ascending=False).reset_index(drop=True)

    def _fit_selector(self, best_per_model: pd.DataFrame) -> dict:
        """Fit on this sweep's models when there are enough; else on the paper's published results.

        Uses the default features known for most training models (models lacking one are listed and left
        out); the rarer features are listed as left out.
        """
        table = registry.models()
        swept = table["name"].isin(best_per_model["model"])
        candidates = table[~swept]
        if swept.sum() >= selector.MIN_MODELS:
            sections = scoring.SCORE_COLUMNS[self._sweep.benchmarks[0]]
            training = registry.with_results(best_per_model, sections.values())
            fitted_on = f"this sweep's best checkpoints ({sections['overall']} score)"
        else:
            sections = registry.nearest_published_columns(self._sweep.rm_type)
            training = table.dropna(subset=[sections["overall"]])
            fitted_on = (f"the paper's published RewardBench results ({sections['overall']}): this sweep has "
                         f"fewer than {selector.MIN_MODELS} models")
        features, left_out = selector.widely_known(training)
        fitted = selector.fit_selector(training, sections["overall"], features, sections, candidates,
                                       seed=self._sweep.seed)
        return {"fitted_on": fitted_on, "features_left_out": left_out, **fitted}
