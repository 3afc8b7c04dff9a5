"""Follows every trial's reports in the Tune driver and hands them to the aggregator, which keeps the ledger."""
import logging
import shutil
import sys
import time

import numpy as np
import ray
from ray import tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

from rmsweep.sweep import interrupt, storage
from rmsweep.sweep.search import METRIC
from rmsweep.sweep.trial import error_summary

log = logging.getLogger(__name__)


class ProgressLine:
    """One status line rewritten in place on a terminal (nothing where stderr is a file or pipe). It keeps no
    handle to the stream: Tune pickles its callbacks with the experiment's state."""

    @staticmethod
    def show(text: str) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K" + text[: shutil.get_terminal_size().columns - 1])
            sys.stderr.flush()

    @staticmethod
    def clear() -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")


class LedgerCallback(tune.Callback):
    """Follows every trial's reports: sends each one's progress, and each finished trial as one ledger row, to
    the aggregator. `checkpoints` turns the storage paths Ray Train reports into addresses (URIs)."""

    def __init__(self, aggregator, total_trials: int, placements: dict, checkpoints: storage.Location,
                 finished: int = 0, interrupted: list[dict] = ()):
        self._aggregator = aggregator
        self._total = total_trials
        self._placements = placements
        self._checkpoints = checkpoints
        self._finished = finished
        self._interrupted = {row["trial_id"]: row for row in interrupted}  # resumed trials go on from these
        self._trials = {}
        self._started = time.time()
        self._line = ProgressLine()

    @staticmethod
    def _new_state() -> dict:
        return {"started": time.time(), "best": float("nan"), "checkpoint": None, "step": 0, "total_steps": None,
                "train_truncated": None, "train_dropped": None, "diverged": False, "out_of_memory": "",
                "nodes": None, "tokens_per_second": None, "startup_seconds": None, "eval_seconds": None,
                "loop_seconds": None, "gradient_checkpointing": None, "layout": None, "two_sequence_pairs": None,
                "loop_started": None, "held_before": 0.0}  # held_before: a resumed trial's time held before

    def _row(self, trial, status: str, error: str = "") -> dict:
        state = self._trials.get(trial.trial_id) or self._new_state()  # e.g. failed before it started
        placement = self._placements[trial.config["model"]]
        stopped_early = status == "stopped_early"
        now = time.time()
        wall_seconds = now - state["started"]
        # Holding its resources from its training loop's start; before that it waited for them (and started).
        held = state["held_before"] + (now - state["loop_started"] if state["loop_started"] else 0.0)
        return {
            "trial_id": trial.config.get("resume_trial_id", trial.trial_id), "model": trial.config["model"],
            "lr": trial.config["lr"], "epochs": trial.config["epochs"], "status": status,
            "stopped_early": stopped_early,
            "steps": state["step"], "total_steps": state["total_steps"], "best_val_accuracy": state["best"],
            "wall_seconds": round(wall_seconds, 1), "held_seconds": round(held, 1),
            "wait_seconds": round(wall_seconds - held, 1), "train_truncated": state["train_truncated"],
            "train_dropped": state["train_dropped"], "tokens_per_second": state["tokens_per_second"],
            "startup_seconds": state["startup_seconds"], "eval_seconds": state["eval_seconds"],
            # Worker-group start and teardown, reports: the trial's time outside its training loop.
            "ray_overhead_seconds": None if state["loop_seconds"] is None or status == "running"
            else round(wall_seconds - state["loop_seconds"], 1),
            "nodes": state["nodes"], "workers": placement.workers, "gpus": placement.need("GPU"),
            "gradient_checkpointing": state["gradient_checkpointing"], "layout": state["layout"],
            "two_sequence_pairs": state["two_sequence_pairs"],  # prompt computed twice: no shared-prompt row
            "checkpoint": state["checkpoint"], "error": error,
        }

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id not in self._trials:  # else Tune retries it: its time, best and checkpoint go on
            state = self._new_state()
            before = self._interrupted.get(trial.config.get("resume_trial_id"))
            if before is not None:  # resumed: its time, best score and best checkpoint so far carry over
                state.update(started=time.time() - before["wall_seconds"], checkpoint=before["checkpoint"],
                             held_before=before.get("held_seconds") or 0.0)
                if before["best_val_accuracy"] is not None:  # None: interrupted before its first evaluation
                    state["best"] = before["best_val_accuracy"]
            self._trials[trial.trial_id] = state
        self._aggregator.trial_progress.remote(self._row(trial, "running"))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        state = self._trials[trial.trial_id]
        if state["loop_started"] is None:
            state["loop_started"] = time.time() - result["loop_seconds"]
        state["step"], state["total_steps"] = result["step"], result["total_steps"]
        state["train_truncated"], state["train_dropped"] = result["train_truncated"], result["train_dropped"]
        state["diverged"], state["out_of_memory"], state["nodes"] = (result["diverged"], result["out_of_memory"],
                                                                     result["nodes"])
        state["tokens_per_second"] = round(result["tokens_per_second"], 1)
        for key in ("gradient_checkpointing", "layout", "two_sequence_pairs"):
            state[key] = result[key]
        for key in ("startup_seconds", "eval_seconds", "loop_seconds"):
            state[key] = round(result[key], 2)
        # The trial's best checkpoint, as Ray Train keeps it: on equal scores, the later one.
        if result.get(CHECKPOINT_PATH_KEY) and not result[METRIC] < state["best"]:  # not <: NaN at first
            state["checkpoint"] = self._checkpoints.address_of(result[CHECKPOINT_PATH_KEY])
        state["best"] = float(np.fmax(state["best"], result[METRIC]))  # fmax: the first result replaces NaN
        row = self._row(trial, "running")
        evaluation = {"trial_id": row["trial_id"], "model": row["model"], "lr": row["lr"], "epochs": row["epochs"],
                      "step": result["step"], "val_accuracy": result[METRIC], "tokens": result["tokens_trained"],
                      "wall_seconds": row["wall_seconds"]}
        self._aggregator.trial_progress.remote(row, evaluation)
        self._show_progress(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trials, trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trials, trial, failed=True)

    def _record(self, trials, trial, failed: bool) -> None:
        state = self._trials.get(trial.trial_id) or self._new_state()
        stopped = state["diverged"] or state["out_of_memory"]
        stopped_early = (not failed and not stopped and state["total_steps"] is not None
                         and state["step"] < state["total_steps"])
        status = ("error" if failed else "diverged" if state["diverged"] else "out_of_memory"
                  if state["out_of_memory"] else "stopped_early" if stopped_early else "completed")
        error = error_summary(str(trial.get_error())) if failed else state["out_of_memory"]
        if status == "stopped_early" and interrupt.requested():  # stopped by Ctrl-C, not by ASHA
            self._aggregator.trial_progress.remote(self._row(trial, "interrupted"))
            self._line.clear()
            log.info("  %s  lr=%.2e epochs=%s  interrupted at step %s: --resume continues it", trial.config["model"],
                     trial.config["lr"], trial.config["epochs"], state["step"])
            return
        row = self._row(trial, status, error)
        self._finished += 1
        ray.get(self._aggregator.record_trial.remote(row))
        self._line.clear()
        log.info("[%d/%s] %s  lr=%.2e epochs=%s  val_accuracy=%.3f  %s  (%.0f s)%s", self._finished,
                 self._total or "?", row["model"], row["lr"], row["epochs"], row["best_val_accuracy"], status,
                 row["wall_seconds"], f"  {error}" if error else "")
        self._show_progress(trials)

    def _show_progress(self, trials) -> None:
        running = sum(trial.status == "RUNNING" for trial in trials)
        best = {}
        for state, trial in ((self._trials.get(t.trial_id), t) for t in trials):
            if state and state["best"] == state["best"]:  # not NaN
                model = trial.config["model"]
                best[model] = max(best.get(model, 0.0), state["best"])
        self._line.show(f"{self._finished}/{self._total or '?'} done, {running} running, "
                        f"{time.time() - self._started:.0f} s; best: "
                        + (", ".join(f"{model} {value:.3f}" for model, value in sorted(best.items())) or "-"))


