"""Transfer across base models: where a model's search starts, from the models already swept.

The optimum learning rate moves smoothly with model size, so once some models of a sweep have finished, their best
learning rates predict where the next model's lies: log10(best lr) fitted linear in log10(parameters) over the
finished models (their mean with fewer than three, or with one size only), refitted as each model finishes, and
shifted by the mean residual of the finished models of the same family, where there are any (a family's models
share a recipe, so their optima tend to sit on the same side of the fit). Before any model has finished, the
prediction is the middle (on the log scale) of the space's published range: the paper's grid for its recipe.
The searcher runs a model's first trial at the prediction (`PerModelSearcher`, `lr_prior`). Models are swept one
after another, smallest first (`InOrderAllocation`), so that most of them start from a fitted prediction.
"""
from collections import Counter

import numpy as np
from ray.tune.search import Searcher

from rmsweep.sweep.search import Allocation

MIN_MODELS_FOR_SLOPE = 3


class LearningRatePrior:
    def __init__(self, params_b: dict[str, float], lr_range: tuple[float, float],
                 families: dict[str, str] | None = None):
        self._params_b, self._families = params_b, families or {}
        self._start = float(np.sqrt(lr_range[0] * lr_range[1]))
        self._best_lr: dict[str, float] = {}

    def model_finished(self, model: str, best_lr: float) -> None:
        self._best_lr[model] = best_lr

    def predict(self, model: str) -> float:
        """The learning rate predicted for `model`."""
        if not self._best_lr:
            return self._start
        finished = list(self._best_lr)
        sizes = np.log10([max(self._params_b[m], 1e-9) for m in finished])
        rates = np.log10([self._best_lr[m] for m in finished])
        slope, intercept = (0.0, rates.mean()) if len(rates) < MIN_MODELS_FOR_SLOPE or np.ptp(sizes) == 0 else (
            np.polyfit(sizes, rates, 1))
        residuals = rates - (intercept + slope * sizes)
        family = self._families.get(model)
        kin = [index for index, name in enumerate(finished) if family and self._families.get(name) == family]
        shift = residuals[kin].mean() if kin else 0.0
        return float(10 ** (intercept + slope * np.log10(max(self._params_b[model], 1e-9)) + shift))


class InOrderAllocation(Allocation):
    """`samples_per_model` trials for each base model, one model after another, smallest first."""

    def __init__(self, params_b: dict[str, float], samples_per_model: int):
        self._models = sorted(params_b, key=params_b.get)
        self._samples_per_model = samples_per_model

    def assign(self, trial_id: str, suggested: Counter):
        open_models = [m for m in self._models if suggested[m] < self._samples_per_model]
        return open_models[0] if open_models else Searcher.FINISHED
