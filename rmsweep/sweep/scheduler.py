"""ASHA with separate rungs per base model: a trial competes only with trials of its own model."""
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from rmsweep.sweep.search import METRIC, MODE


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


