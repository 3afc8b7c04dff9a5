"""The searcher: one Optuna study per base model, and the allocation that says which model gets the next trial
(even, or budget-aware successive halving over models)."""
import math
import pickle
import warnings
from collections import Counter

import numpy as np
import optuna
from optuna.samplers import BruteForceSampler, GPSampler, RandomSampler, TPESampler
from optuna.trial import TrialState, create_trial
from ray.tune.search import Searcher

from rmsweep.sweep import interrupt, ledger

METRIC, MODE = "val_accuracy", "max"
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per study created is noise here
MAX_REPEATS = 20  # times a study may suggest an already-run point before the repeat is accepted
ORDERED_SAMPLERS = ("tpe", "gp")  # model-based: they search a list of learning rates on its log scale


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


def make_sampler(name: str, samples_per_model: int, seed: int) -> optuna.samplers.BaseSampler:
    """One model's sampler. Model-based ones sample at random until n_startup_trials have finished (Optuna's
    default is 10); with a few trials per model that would be all of them, so half of each model's trials explore
    and the rest are guided."""
    startup = max(2, min(10, samples_per_model // 2))
    if name == "grid":
        with warnings.catch_warnings():  # "experimental" since Optuna 3.1, and what --sampler grid needs
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return BruteForceSampler(seed=seed)
    if name == "gp":
        return GPSampler(n_startup_trials=startup, seed=seed)
    if name == "random":
        return RandomSampler(seed=seed)
    return TPESampler(n_startup_trials=startup, seed=seed)


def nearest_on_log_scale(values, lr: float) -> float:
    """The value of `values` nearest `lr` on the log scale."""
    return values[int(np.abs(np.log10(values) - np.log10(lr)).argmin())]


def tell(study: optuna.Study, asked, value: float | None = None, state: TrialState = TrialState.COMPLETE) -> None:
    """study.tell, where the grid's BruteForceSampler may stop the study once every point has been told: outside
    study.optimize that raises, after the trial's state is stored; the allocation ends the sweep instead."""
    try:
        study.tell(asked, value, state=state)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def trial_value(result: dict) -> float:
    """What a finished trial is worth: its best evaluation, the checkpoint a sweep keeps and recommends (as the
    ledger records it), not its last."""
    return result.get("best_val_accuracy", result[METRIC])


def stopped_early(result: dict | None) -> bool:
    """A trial's last result says it ended before its last step without diverging or running out of memory: ASHA
    (or Ctrl-C) stopped it."""
    return bool(result) and "total_steps" in result and result["step"] < result["total_steps"] and not (
        result.get("diverged") or result.get("out_of_memory"))


class PerModelSearcher(Searcher):
    """One Optuna study per base model (ask and tell); which model gets the next trial is the allocation's choice
    (even, or budget-aware: `ModelHalving`).

    Each study samples with `sampler`: "tpe" (Optuna's TPE), "gp" (Optuna's Gaussian-process sampler), "random",
    or "grid", which walks every point of the (categorical) space in a random order: Optuna's BruteForceSampler,
    which knows the points tried by their values, so that told points are never run again. Given `lr_grid` (a
    list-valued space searched by TPE or GP), lr is searched on its log scale between the grid's ends and each
    sample taken to the nearest grid value: an ordered lr lets a model-based sampler learn that neighbouring
    rates score alike, which a categorical one cannot. Given `lr_prior` (transfer.py), a model's first trial runs
    at the learning rate the models finished before it predict.

    Every evaluation is reported to the trial's study as an intermediate value; a trial ASHA stops is told as
    pruned (not as complete with its low-rung score), so TPE weighs it as a trial that did not get to finish.
    A resumed sweep hands in its ledger: `finished` trials are told to their studies; `interrupted` ones are told
    as pruned at their best so far and handed out first, as they were, to continue from their checkpoints (their
    final result is told when they complete).
    """

    def __init__(self, models: list[str], distributions: dict, samples_per_model: int, seed: int,
                 sampler: str = "tpe", finished: list[dict] = (), interrupted: list[dict] = (), allocation=None,
                 lr_grid: tuple | None = None, lr_prior=None):
        super().__init__(metric=METRIC, mode=MODE)
        self.allocation = allocation or EvenAllocation(models, samples_per_model)
        self._samples_per_model, self._lr_prior = samples_per_model, lr_prior
        self._ended = Counter()  # trials of each model told their end in this run
        self._distributions = distributions
        self._lr_grid = lr_grid
        self.studies = {model: optuna.create_study(direction="maximize",
                                                   sampler=make_sampler(sampler, samples_per_model, seed + index))
                        for index, model in enumerate(models)}
        self._suggested = Counter(row["model"] for row in [*finished, *interrupted])
        self._model_of_trial = {}
        self._asked = {}  # Tune trial id -> the study's trial
        self._reported = {}  # Tune trial id -> the steps reported to its study's trial
        self._point_of_trial = {}  # Tune trial id -> (lr, epochs)
        # Per model, each (lr, epochs) run or running -> how it ended, (value, step, pruned); None while it runs.
        self._tried = {model: {} for model in models}
        for row in [*interrupted, *finished]:
            pruned = row in interrupted or row["status"] == "stopped_early"
            self._tell_ledger_row(row, pruned)
            if row in finished and row["best_val_accuracy"] is not None:
                self._tried[row["model"]][(row["lr"], row["epochs"])] = (row["best_val_accuracy"], row["steps"],
                                                                         pruned)
            else:
                self._tried[row["model"]][(row["lr"], row["epochs"])] = None
        for row in finished:
            self._model_ended(row["model"])
        self._to_resume = [{"model": row["model"], "lr": row["lr"], "epochs": row["epochs"],
                            "resume_trial_id": row["trial_id"]} for row in interrupted]
        self._resumed = {}  # Tune trial id -> config, for trials the studies did not suggest

    def _tell_ledger_row(self, row: dict, pruned: bool) -> None:
        """A trial of an interrupted run, told to its model's study as what it was."""
        best, params = row["best_val_accuracy"], {"lr": row["lr"], "epochs": row["epochs"]}
        if row["status"] in ledger.FAILED or best is None:
            state, value, intermediate = TrialState.FAIL, None, None
        elif pruned:
            state, value, intermediate = TrialState.PRUNED, None, {int(row["steps"] or 0): best}
        else:
            state, value, intermediate = TrialState.COMPLETE, best, None
        self.studies[row["model"]].add_trial(create_trial(state=state, value=value, params=params,
                                                          distributions=self._distributions,
                                                          intermediate_values=intermediate))

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric, mode and space are fixed at construction

    def suggest(self, trial_id: str):
        if interrupt.requested():  # Ctrl-C: no new trials
            return Searcher.FINISHED
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
        study, tried = self.studies[model], self._tried[model]
        if self._lr_prior and not tried:
            self._enqueue_prior(study, model)
        for attempt in range(MAX_REPEATS + 1):
            asked = study.ask(self._distributions)
            key = (self._on_grid(asked.params["lr"]), asked.params["epochs"])
            if key not in tried or attempt == MAX_REPEATS:
                break
            self._tell_known(study, asked, tried[key])
        tried.setdefault(key, None)
        self._asked[trial_id], self._reported[trial_id] = asked, set()
        self._point_of_trial[trial_id] = key
        return {"lr": key[0], "epochs": key[1]}

    def _enqueue_prior(self, study: optuna.Study, model: str) -> None:
        """A model's first trial at the learning rate the models swept before it predict (transfer.py)."""
        predicted, lr = self._lr_prior.predict(model), self._distributions["lr"]
        if isinstance(lr, optuna.distributions.CategoricalDistribution):
            predicted = nearest_on_log_scale(lr.choices, predicted)
        else:
            predicted = float(np.clip(predicted, lr.low, lr.high))
        study.enqueue_trial({"lr": predicted})

    def _model_ended(self, model: str) -> None:
        """Once all of a model's trials have ended, its best learning rate goes to the prior."""
        self._ended[model] += 1
        if not self._lr_prior or self._ended[model] < self._samples_per_model:
            return
        completed = {point: outcome[0] for point, outcome in self._tried[model].items()
                     if outcome is not None and not outcome[2]}
        if completed:
            self._lr_prior.model_finished(model, max(completed, key=completed.get)[0])

    def _on_grid(self, lr: float) -> float:
        """The grid's value nearest `lr` on the log scale (lr itself without a grid)."""
        return lr if self._lr_grid is None else nearest_on_log_scale(self._lr_grid, lr)

    @staticmethod
    def _tell_known(study, asked, outcome) -> None:
        """A repeated suggestion told what the point's earlier trial gave (failed while that one still runs)."""
        if outcome is None:
            tell(study, asked, state=TrialState.FAIL)
            return
        value, step, pruned = outcome
        if pruned:
            asked.report(value, step=int(step))
            tell(study, asked, state=TrialState.PRUNED)
        else:
            tell(study, asked, value)

    def _report(self, trial_id: str, result: dict) -> None:
        if result["step"] not in self._reported[trial_id]:  # a trial resumed at its last step reports it again
            self._reported[trial_id].add(result["step"])
            self._asked[trial_id].report(result[METRIC], step=result["step"])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._resumed:
            self._report(trial_id, result)
            self.allocation.on_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        model = self._model_of_trial[trial_id]
        study = self.studies[model]
        if trial_id in self._resumed:
            if result and not error:
                config = self._resumed[trial_id]
                study.add_trial(create_trial(value=trial_value(result), params={"lr": config["lr"],
                                                                               "epochs": config["epochs"]},
                                             distributions=self._distributions))
                self._tried[config["model"]][(config["lr"], config["epochs"])] = (trial_value(result),
                                                                                  result["step"], False)
            self._model_ended(model)  # a resumed trial that failed ends too (it has no result to tell)
            return
        if trial_id not in self._asked:  # told already (Tune may repeat a completion)
            return
        asked, point = self._asked[trial_id], self._point_of_trial[trial_id]
        tried = self._tried[self._model_of_trial[trial_id]]
        if error or not result or result.get("diverged") or result.get("out_of_memory"):
            tell(study, asked, state=TrialState.FAIL)
        elif stopped_early(result):  # told as pruned, with the evaluations it reported
            self._report(trial_id, result)
            tell(study, asked, state=TrialState.PRUNED)
            tried[point] = (trial_value(result), result["step"], True)
        else:
            tell(study, asked, trial_value(result))
            tried[point] = (trial_value(result), result["step"], False)
        del self._asked[trial_id], self._reported[trial_id]
        self.allocation.on_complete(trial_id, result)
        self._model_ended(model)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))


