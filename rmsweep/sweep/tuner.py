"""Ray Tune wiring: one Tune run for all base models of a sweep.

- searcher: one Optuna TPE study per base model, multiplexed (`PerModelSearcher`), so a model's lr and
  epochs are tuned on that model's own results;
- scheduler: one ASHA per base model (`PerModelASHA`): a trial competes only with trials of its own model;
- trial: a function that builds and fits a `TorchTrainer` (Ray Train V2 cannot be passed to a Tuner);
  `TuneReportCallback` forwards every worker report to Tune; hyperparameters are sampled once here, in the
  driver, and reach every rank through `train_loop_config`;
- each trial's worker group is sized per base model (`placement.py`): DDP replicas or FSDP shards;
- `LedgerCallback` sends each trial's progress, and each finished trial, to the aggregator actor;
  Tune's TensorBoard logger writes every trial's metrics under <run>/tune.
"""
import math
import os
import pickle
import re
import time
import warnings
from collections import Counter

import numpy as np
import optuna
import ray
import ray.train
from optuna.samplers import BruteForceSampler, TPESampler
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback
from ray.tune.logger import TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from rmsweep.sweep import storage
from rmsweep.training.loop import train_loop_per_worker

METRIC, MODE = "val_accuracy", "max"
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per study created is noise here
MAX_REPEATS = 20  # times a study may suggest an already-run point before the repeat is accepted
TRIAL_DRIVER_CPUS = 0.01  # the trial function only waits on its worker group; Tune refuses a zero request
# Ray Train reads these from the environment of the process that builds a TorchTrainer (the trial) and passes
# them on to its controller; a value the job's environment already sets wins.
RAY_TRAIN_ENV = {
    # Ray Train gives up on a worker group after 60 s without resources; GPU nodes that an autoscaler starts
    # for it take minutes to boot.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "1800",
    # The controller polls its worker group every 2 s by default and a trial waits on several polls (start,
    # end): 7 s of a tiny trial's 17 (scripts/bench_overhead.py). At 0.5 s: two small calls a second per worker.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}


def set_ray_train_env() -> None:
    """Before a TorchTrainer is built: RAY_TRAIN_ENV, where the environment does not set a value already."""
    for name, value in RAY_TRAIN_ENV.items():
        os.environ.setdefault(name, value)


class Allocation:
    """Which base model gets the next trial: `assign` names one, or returns None (ask again once a running trial
    has reported) or Searcher.FINISHED. The searcher passes every trial's results on, for allocations that
    weigh them."""

    def assign(self, trial_id: str, suggested: Counter):
        raise NotImplementedError

    def on_result(self, trial_id: str, result: dict) -> None:
        """A trial's evaluation."""

    def on_complete(self, trial_id: str, result: dict | None) -> None:
        """A trial's end, with its last result when ASHA stopped it."""


class EvenAllocation(Allocation):
    """`samples_per_model` trials for every base model, handed out round-robin."""

    def __init__(self, models: list[str], samples_per_model: int):
        self._models, self._samples_per_model = models, samples_per_model

    def assign(self, trial_id: str, suggested: Counter):
        open_models = [m for m in self._models if suggested[m] < self._samples_per_model]
        return min(open_models, key=lambda m: suggested[m]) if open_models else Searcher.FINISHED


class ModelHalving(Allocation):
    """Budget-aware allocation: successive halving over base models, seeded by the selector's predictions.

    Round 0 gives `first_round` trials to each model the selector ranks in its top half, one to the others.
    When a round's trials have all finished, the better half of the models still in (best validation accuracy
    so far; the prediction breaks ties) goes on to the next round, each with twice the trials of the last. A
    trial is handed out only while the trial-steps spent, plus what running trials may still take (their full
    length), leave room for one more full-length trial; then the sweep ends. A model never gets more trials
    than `max_trials_per_model` (the number of points of a list-valued space).
    """

    def __init__(self, priors: dict, budget_steps: int, max_trial_steps: int, first_round: int = 2,
                 max_trials_per_model: int | None = None):
        self._priors = priors
        self._in = sorted(priors, key=priors.get, reverse=True)
        top_half = math.ceil(len(self._in) / 2)
        self._quota = {m: first_round if rank < top_half else 1 for rank, m in enumerate(self._in)}
        self._per_model = first_round
        self._budget, self._max_trial_steps = budget_steps, max_trial_steps
        self._cap = max_trials_per_model
        self._this_round = Counter()
        self._running = {}  # trial id -> [model, steps so far]
        self._spent = 0  # trial-steps of finished trials
        self.best = {m: float("-inf") for m in priors}
        self.rounds = 1

    def assign(self, trial_id: str, suggested: Counter):
        if self._spent + (len(self._running) + 1) * self._max_trial_steps > self._budget:
            return None if self._running else Searcher.FINISHED  # running trials may stop early: wait for them
        if not self._open(suggested) and not self._running:
            self._next_round()
        open_models = self._open(suggested)
        if not open_models:
            return None if self._running else Searcher.FINISHED  # the round is not over / every model capped
        model = min(open_models, key=lambda m: (self._this_round[m], -self._priors[m]))
        self._this_round[model] += 1
        self._running[trial_id] = [model, 0]
        return model

    def _open(self, suggested: Counter) -> list[str]:
        return [m for m in self._in if self._this_round[m] < self._quota[m]
                and (self._cap is None or suggested[m] < self._cap)]

    def _next_round(self) -> None:
        ranked = sorted(self._in, key=lambda m: (self.best[m], self._priors[m]), reverse=True)
        self._in = ranked[: math.ceil(len(ranked) / 2)]
        self._per_model *= 2
        self._quota = {m: self._per_model for m in self._in}
        self._this_round = Counter()
        self.rounds += 1

    def on_result(self, trial_id: str, result: dict) -> None:
        model = self._running[trial_id][0]
        self._running[trial_id][1] = result["step"]
        self.best[model] = max(self.best[model], result[METRIC])

    def on_complete(self, trial_id: str, result: dict | None) -> None:
        # A trial ASHA stops hands its last result here, not to on_result.
        if result and METRIC in result:
            self.on_result(trial_id, result)
        self._spent += self._running.pop(trial_id)[1]


class PerModelSearcher(Searcher):
    """One Optuna study per base model; which model gets the next trial is the allocation's choice (even, or
    budget-aware: `ModelHalving`).

    Each study samples with TPE, or, with `grid`, walks every point of the (categorical) space in a random
    order: Optuna's BruteForceSampler, which knows the points tried by their values, so that told points are
    never run again. A resumed sweep hands in its ledger: `finished` trials are told to their studies;
    `interrupted` ones are told as pruned at their best so far and handed out first, as they were, to continue
    from their checkpoints (their final result is told when they complete).
    """

    def __init__(self, models: list[str], distributions: dict, samples_per_model: int, seed: int,
                 grid: bool = False, finished: list[dict] = (), interrupted: list[dict] = (), allocation=None):
        super().__init__(metric=METRIC, mode=MODE)
        self.allocation = allocation or EvenAllocation(models, samples_per_model)
        # TPE samples at random until n_startup_trials have finished (Optuna's default is 10); with a few trials
        # per model that would be all of them, so half of each model's budget is spent exploring, the rest guided.
        startup = max(2, min(10, samples_per_model // 2))

        def sampler(index):
            if grid:
                with warnings.catch_warnings():  # "experimental" since Optuna 3.1, and what --sampler grid needs
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return BruteForceSampler(seed=seed + index)
            return TPESampler(n_startup_trials=startup, seed=seed + index)

        self._studies = {
            model: OptunaSearch(space=distributions, metric=METRIC, mode=MODE, sampler=sampler(index))
            for index, model in enumerate(models)
        }
        self._suggested = Counter(row["model"] for row in [*finished, *interrupted])
        self._model_of_trial = {}
        self._study_trial = {}  # Tune trial id -> the id its study knows it by
        self._point_of_trial = {}  # Tune trial id -> (lr, epochs)
        # Per model, each (lr, epochs) run or running -> its best validation accuracy (None while it runs).
        self._tried = {model: {} for model in models}
        for row in [*interrupted, *finished]:
            self._tried[row["model"]][(row["lr"], row["epochs"])] = row["best_val_accuracy"]
        for row in finished:
            self._studies[row["model"]].add_evaluated_point(
                {"lr": row["lr"], "epochs": row["epochs"]}, row["best_val_accuracy"],
                error=row["status"] in ("error", "diverged", "out_of_memory"))
        for row in interrupted:
            self._studies[row["model"]].add_evaluated_point(
                {"lr": row["lr"], "epochs": row["epochs"]}, row["best_val_accuracy"], pruned=True,
                intermediate_values=[row["best_val_accuracy"]] if row["best_val_accuracy"] is not None else None)
        self._to_resume = [{"model": row["model"], "lr": row["lr"], "epochs": row["epochs"],
                            "resume_trial_id": row["trial_id"]} for row in interrupted]
        self._resumed = {}  # Tune trial id -> config, for trials the studies did not suggest

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric, mode and space are fixed at construction

    def suggest(self, trial_id: str):
        if self._to_resume:
            config = self._to_resume.pop(0)
            self._model_of_trial[trial_id] = config["model"]
            self._resumed[trial_id] = config
            return config
        model = self.allocation.assign(trial_id, self._suggested)
        if model in (None, Searcher.FINISHED):  # None: not now, ask again once a trial has finished
            return model
        self._suggested[model] += 1
        self._model_of_trial[trial_id] = model
        return {"model": model, **self._new_point(model, trial_id)}

    def _new_point(self, model: str, trial_id: str) -> dict:
        """The study's next point, not one this model already ran: training is deterministic, so a repeat would
        only cost compute. A repeated suggestion is told its known result (or as failed while that trial still
        runs) and the study asked again; after MAX_REPEATS, or when every point has run, the repeat stands."""
        study, tried = self._studies[model], self._tried[model]
        for attempt in range(MAX_REPEATS + 1):
            study_trial = trial_id if attempt == 0 else f"{trial_id}-repeat{attempt}"
            point = study.suggest(study_trial)
            key = (point["lr"], point["epochs"])
            if key not in tried or attempt == MAX_REPEATS:
                break
            study.on_trial_complete(study_trial, result={METRIC: tried[key]} if tried[key] is not None else None,
                                    error=tried[key] is None)
        tried.setdefault(key, None)
        self._study_trial[trial_id] = study_trial
        self._point_of_trial[trial_id] = key
        return point

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._resumed:
            self._studies[self._model_of_trial[trial_id]].on_trial_result(self._study_trial[trial_id], result)
            self.allocation.on_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        study = self._studies[self._model_of_trial[trial_id]]
        if trial_id not in self._resumed:
            study.on_trial_complete(self._study_trial.pop(trial_id), result=result, error=error)
            self.allocation.on_complete(trial_id, result)
            if result and not error:
                self._tried[self._model_of_trial[trial_id]][self._point_of_trial[trial_id]] = result[METRIC]
        elif result and not error:
            config = self._resumed[trial_id]
            study.add_evaluated_point({"lr": config["lr"], "epochs": config["epochs"]}, result[METRIC])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))


class PerModelASHA(FIFOScheduler):
    """ASHA with separate rungs for each base model."""

    def __init__(self, max_t: int, grace_period: int, reduction_factor: int):
        super().__init__()
        self._asha_settings = dict(max_t=max_t, grace_period=min(grace_period, max_t),
                                   reduction_factor=reduction_factor, stop_last_trials=False)
        self._by_model = {}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def _asha(self, trial) -> ASHAScheduler:
        model = trial.config["model"]
        if model not in self._by_model:
            self._by_model[model] = ASHAScheduler(metric=METRIC, mode=MODE, **self._asha_settings)
        return self._by_model[model]

    def on_trial_add(self, tune_controller, trial):
        self._asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        return self._asha(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        self._asha(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        self._asha(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        # Tune calls this before retrying a trial too, then on_trial_add; ASHA keeps the trial's record until
        # on_trial_remove.
        self._asha(trial).on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{model}: {asha.debug_string()}" for model, asha in self._by_model.items())


def run_trial(config: dict, settings: dict) -> None:
    """One trial: fit a TorchTrainer with this trial's sampled lr and epochs."""
    # A resumed trial keeps its id, and so its Ray Train run, whose latest checkpoint it continues from.
    trial_id = config.get("resume_trial_id") or tune.get_context().get_trial_id()
    model = config["model"]
    placement = settings["placements"][model]
    train_config = {
        **settings["training"], "model": model, "model_spec": settings["model_specs"][model],
        "rm_type": settings["rm_type"], "bt_variant": settings["bt_variant"],
        "reward_centering": settings["reward_centering"], "lr": config["lr"], "epochs": config["epochs"],
        "seed": settings["seed"], "regression_weights": settings["validation_weights"], "data": settings["data_ref"],
        "strategy": placement["strategy"], "token_cache": settings["token_cache"],
        "data_fingerprints": settings["data_fingerprints"], "padding_free": settings["padding_free"],
        "length_grouping": True, "out_of_memory_dir": settings["out_of_memory_dir"],
        # On where the placement turned it on; else as asked, where "auto" turns it on once a step runs out of memory.
        "gradient_checkpointing": placement["gradient_checkpointing"] or settings["gradient_checkpointing"],
    }
    # The trial driver's token CPU comes out of its workers' share: a trial reserves workers x cpus-per-worker.
    workers = placement["workers"]
    resources = {"CPU": placement["cpus_per_worker"] - TRIAL_DRIVER_CPUS / workers,
                 "GPU": placement["gpus_per_worker"]}
    set_ray_train_env()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=train_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=placement["gpus_per_worker"] > 0,
            resources_per_worker={k: v for k, v in resources.items() if v},
        ),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=settings["checkpoint_storage"],
            callbacks=[TuneReportCallback()],
            # Every evaluation carries a checkpoint; Ray Train keeps the best one and the latest (to resume from).
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=None if settings["keep_checkpoints"] == "all" else 1,
                checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE,
            ),
            # A worker that dies (a lost node, a killed process) restarts the worker group from the latest one.
            failure_config=ray.train.FailureConfig(max_failures=settings["max_failures"]),
        ),
    )
    trainer.fit()


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

    @staticmethod
    def _new_state() -> dict:
        return {"started": time.time(), "best": float("nan"), "checkpoint": None, "step": 0, "total_steps": None,
                "train_truncated": None, "train_dropped": None, "diverged": False, "out_of_memory": "",
                "nodes": None, "tokens_per_second": None, "startup_seconds": None, "eval_seconds": None,
                "loop_seconds": None, "gradient_checkpointing": None}

    def _row(self, trial, status: str, error: str = "") -> dict:
        state = self._trials.get(trial.trial_id) or self._new_state()  # e.g. failed before it started
        placement = self._placements[trial.config["model"]]
        stopped_early = status == "stopped_early"
        wall_seconds = time.time() - state["started"]
        return {
            "trial_id": trial.config.get("resume_trial_id", trial.trial_id), "model": trial.config["model"],
            "lr": trial.config["lr"], "epochs": trial.config["epochs"], "status": status,
            "stopped_early": stopped_early,
            "steps": state["step"], "total_steps": state["total_steps"], "best_val_accuracy": state["best"],
            "wall_seconds": round(wall_seconds, 1), "train_truncated": state["train_truncated"],
            "train_dropped": state["train_dropped"], "tokens_per_second": state["tokens_per_second"],
            "startup_seconds": state["startup_seconds"], "eval_seconds": state["eval_seconds"],
            # Worker-group start and teardown, reports: the trial's time outside its training loop.
            "ray_overhead_seconds": None if state["loop_seconds"] is None or status == "running"
            else round(wall_seconds - state["loop_seconds"], 1),
            "nodes": state["nodes"], "gpus": placement["workers"] * placement["gpus_per_worker"],
            "gradient_checkpointing": state["gradient_checkpointing"],
            "checkpoint": state["checkpoint"], "error": error,
        }

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id not in self._trials:  # else Tune retries it: its time, best and checkpoint go on
            state = self._new_state()
            before = self._interrupted.get(trial.config.get("resume_trial_id"))
            if before is not None:  # resumed: its time, best score and best checkpoint so far carry over
                state.update(started=time.time() - before["wall_seconds"], checkpoint=before["checkpoint"])
                if before["best_val_accuracy"] is not None:  # None: interrupted before its first evaluation
                    state["best"] = before["best_val_accuracy"]
            self._trials[trial.trial_id] = state
        self._aggregator.trial_progress.remote(self._row(trial, "running"))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        state = self._trials[trial.trial_id]
        state["step"], state["total_steps"] = result["step"], result["total_steps"]
        state["train_truncated"], state["train_dropped"] = result["train_truncated"], result["train_dropped"]
        state["diverged"], state["out_of_memory"], state["nodes"] = (result["diverged"], result["out_of_memory"],
                                                                     result["nodes"])
        state["tokens_per_second"] = round(result["tokens_per_second"], 1)
        state["gradient_checkpointing"] = result["gradient_checkpointing"]
        for key in ("startup_seconds", "eval_seconds", "loop_seconds"):
            state[key] = round(result[key], 2)
        # The trial's best checkpoint, as Ray Train keeps it: on equal scores, the later one.
        if result.get(CHECKPOINT_PATH_KEY) and not result[METRIC] < state["best"]:  # not <: NaN at first
            state["checkpoint"] = self._checkpoints.address_of(result[CHECKPOINT_PATH_KEY])
        state["best"] = float(np.fmax(state["best"], result[METRIC]))  # fmax: the first result replaces NaN
        self._aggregator.trial_progress.remote(self._row(trial, "running"))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, failed=True)

    def _record(self, trial, failed: bool) -> None:
        state = self._trials.get(trial.trial_id) or self._new_state()
        stopped = state["diverged"] or state["out_of_memory"]
        stopped_early = (not failed and not stopped and state["total_steps"] is not None
                         and state["step"] < state["total_steps"])
        status = ("error" if failed else "diverged" if state["diverged"] else "out_of_memory"
                  if state["out_of_memory"] else "stopped_early" if stopped_early else "completed")
        error = error_summary(str(trial.get_error())) if failed else state["out_of_memory"]
        row = self._row(trial, status, error)
        self._finished += 1
        ray.get(self._aggregator.record_trial.remote(row))
        print(f"[{self._finished}/{self._total or '?'}] {row['model']}  lr={row['lr']:.2e} epochs={row['epochs']}  "
              f"val_accuracy={row['best_val_accuracy']:.3f}  {status}  ({row['wall_seconds']:.0f} s)"
              + (f"  {error}" if error else ""), flush=True)


def error_summary(error_text: str) -> str:
    """One line for the ledger from a failed trial's error (Ray Train's wraps each worker's traceback): the
    last exception line, `Type: message`, else the first line."""
    lines = [line.strip() for line in error_text.splitlines() if line.strip()]
    exceptions = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b.*:", line)]
    return (exceptions or lines or [""])[-1 if exceptions else 0]


def run_sweep(settings: dict, space, aggregator, run_dir: storage.Location, data_ref,
              ledger: list[dict] = ()) -> tune.ResultGrid:
    """One Tune run over every base model; `data_ref` holds the train and validation records. `ledger`: the
    trials of an interrupted run of this sweep (--resume): finished ones are not run again, running ones go on."""
    models = list(settings["model_specs"])
    steps_per_epoch = settings["train_examples"] // settings["training"]["global_batch_size"]
    max_evaluations = max(1, max(space.epochs) * steps_per_epoch // settings["training"]["eval_every"])
    max_trial_steps = max(space.epochs) * steps_per_epoch
    grid = settings["sampler"] == "grid"  # resolve() checked that the space is a grid
    allocation = None
    if settings["budget_steps"]:  # budget-aware: as many trials as the budget allows (none is resumed)
        allocation = ModelHalving(settings["priors"], settings["budget_steps"], max_trial_steps,
                                  max_trials_per_model=None if space.lr_is_range else space.grid_size())
        total_trials = None
    else:
        total_trials = len(models) * settings["samples_per_model"]
    finished = [row for row in ledger if row["status"] != "running"]
    interrupted = [row for row in ledger if row["status"] == "running"]
    concurrency = settings["max_concurrent_trials"]
    checkpoints = run_dir.child("checkpoints")
    settings = {**settings, "checkpoint_storage": checkpoints.uri, "data_ref": data_ref,
                # One file per base model that ran out of memory without checkpointing (see train.py).
                "out_of_memory_dir": run_dir.child("out_of_memory").uri}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, settings=settings), {"CPU": TRIAL_DRIVER_CPUS}),
        tune_config=tune.TuneConfig(
            search_alg=PerModelSearcher(models, space.distributions(), settings["samples_per_model"], settings["seed"],
                                        grid, finished, interrupted, allocation),
            scheduler=PerModelASHA(max_evaluations, space.asha["grace_period"], space.asha["reduction_factor"]),
            num_samples=-1 if total_trials is None else total_trials - len(finished),  # -1: until the searcher ends
            max_concurrent_trials=concurrency,
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=run_dir.uri, verbose=0,
            # A trial whose driver dies with its node is started again; its Ray Train run (named by the trial
            # id) goes on from its latest checkpoint.
            failure_config=tune.FailureConfig(max_failures=settings["max_failures"]),
            callbacks=[LedgerCallback(aggregator, total_trials, settings["placements"], checkpoints, len(finished),
                                      interrupted),
                       TBXLoggerCallback()],
        ),
    )
    if allocation:
        print(f"sweeping {len(models)} base model(s) within {settings['budget_steps']:,} trial-steps (successive "
              f"halving over models, seeded by the selector), {concurrency} at a time", flush=True)
    else:
        print(f"sweeping {len(models)} base model(s) x {settings['samples_per_model']} trials, "
              f"{concurrency} at a time", flush=True)
    return tuner.fit()
