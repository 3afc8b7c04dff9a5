"""Response surfaces of a paper-scale sweep: each registry model's score over (lr, epochs) and along training, with
the observation noise of a validation split, so that search strategies can be run many times at no GPU cost.

Where each part comes from (docs/simulator.md shows the fit):
- Shape: RewardBench 2's lr x epochs sweep (`rewardbench2_lr_epochs.csv`, Tulu 8B SFT on Tulu data) depends on lr
  and epochs through their product (1e-6 x 3 epochs and 3e-6 x 1 epoch both scored 60.0), and falls off on each
  side of an optimum roughly linearly in log10(lr x epochs), faster on the over-trained side. So the score is
  peak - slope_low * max(0, u* - u) - slope_high * max(0, u - u*), u = log10(lr x epochs); the slopes are fitted
  to those 9 published points (`fit_rewardbench2`).
- Peak: the paper's published score of the model and RM type (registry `bt_score` / `reg_score`), reached at the
  best checkpoint of the grid being simulated, as the paper's score is its grid's best checkpoint.
- Optimum: u*(model) = log10(LR_STAR_8B) - exponent x log10(params / 8B) + the model's offset (normal, spread
  `lr_spread_decades`, drawn per model). The exponent, the spread and LR_STAR_8B are assumptions, stated in
  `SimulationSettings`: no published data pins them for the paper's recipe.
- Curves: at a fraction f of its steps a trial has done lr x epochs x f of training, so its score is the surface
  at u + log10(f), not below chance: curves rise, peak and, past u*, fall, so they cross and early stopping can err.
- Noise: validation accuracy drawn Binomial(validation_pairs, p) / validation_pairs (HelpSteer2-Preference's
  validation split holds 352 pairs) around the true score plus a per-trial training-seed term.
"""
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from rmsweep.data import registry

CHANCE = 50.0  # pairwise accuracy, in points, of a reward model that knows nothing
LR_STAR_8B = 2e-6  # assumed optimum for an 8B model at 1 epoch of the paper's recipe: inside its grid (5e-7..5e-6)


@dataclass(frozen=True)
class SimulationSettings:
    """The simulator's assumptions; the sensitivity table varies them."""
    size_exponent: float = 0.5  # lr* proportional to params^-exponent
    lr_spread_decades: float = 0.15  # sd of a model's own lr* offset, in decades
    seed_sd_points: float = 1.0  # sd of a training seed's effect on a trial's score, in points
    validation_pairs: int = 352  # HelpSteer2-Preference's validation split
    noise_scale: float = 1.0  # multiplies both noise terms (the sensitivity table doubles it)


@dataclass(frozen=True)
class Shape:
    """The fitted fall-off around the optimum, in points per decade of lr x epochs."""
    slope_low: float
    slope_high: float
    optimum: float  # u* of the fitted model (Tulu 8B SFT on Tulu data)
    peak: float
    rms_residual: float


def _read_rewardbench2() -> pd.DataFrame:
    with resources.files("rmsweep.simulate").joinpath("rewardbench2_lr_epochs.csv").open() as handle:
        return pd.read_csv(handle, comment="#")


@cache
def fit_rewardbench2() -> Shape:
    """Least squares over u* on a fine grid, (peak, slopes) linear for each; on Tulu 8B SFT trained on Tulu."""
    rows = _read_rewardbench2().query("base == 'Tulu 8B SFT' and train_data == 'Tulu'")
    u, score = np.log10(rows["lr"] * rows["epochs"]).to_numpy(), rows["avg"].to_numpy()
    best = None
    for optimum in np.arange(u.min(), u.max(), 0.005):
        design = np.stack([np.ones_like(u), -np.maximum(0, optimum - u), -np.maximum(0, u - optimum)], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, score, rcond=None)
        error = float(np.sqrt(np.mean((design @ coefficients - score) ** 2)))
        if best is None or error < best.rms_residual:
            best = Shape(float(coefficients[1]), float(coefficients[2]), float(optimum), float(coefficients[0]), error)
    return best


@dataclass(frozen=True)
class Surface:
    """One base model's true score (points) over (lr, epochs, fraction of its steps done)."""
    model: str
    params_b: float
    optimum: float  # u* = log10(lr* x epochs*)
    top: float  # the score at u*, set so that the grid's best point scores the published score
    shape: Shape

    def true_score(self, lr, epochs, fraction=1.0):
        u = np.log10(np.asarray(lr) * np.asarray(epochs) * np.asarray(fraction))
        score = (self.top - self.shape.slope_low * np.maximum(0, self.optimum - u)
                 - self.shape.slope_high * np.maximum(0, u - self.optimum))
        return np.maximum(score, CHANCE)

    def observe(self, lr, epochs, fraction, seed_effect: float, settings: SimulationSettings,
                rng: np.random.Generator) -> float:
        """A validation accuracy (0-1) as a trial would report it: the true score, the trial's seed effect, and
        binomial sampling of the validation pairs."""
        mean = np.clip((self.true_score(lr, epochs, fraction) + seed_effect) / 100, 0, 1)
        if settings.noise_scale == 0:
            return float(mean)
        pairs = max(1, round(settings.validation_pairs / settings.noise_scale ** 2))  # variance x noise_scale^2
        return float(rng.binomial(pairs, mean) / pairs)


def _model_offset(name: str, seed: int, spread: float) -> float:
    """A model's own lr* offset in decades: the same for a (model, seed) across strategies."""
    return float(np.random.default_rng([seed, zlib.crc32(name.encode())]).normal(0, spread))


def surfaces(rm_type: str, points: list[tuple[float, int, float]],
             settings: SimulationSettings = SimulationSettings(), seed: int = 0) -> dict[str, Surface]:
    """Every registry model with a published score for `rm_type`, its best over `points` ((lr, epochs, fraction of
    the steps) a sweep can recommend: the grid's checkpoints) at that score."""
    shape, column = fit_rewardbench2(), registry.paper_score_columns(rm_type)["overall"]
    table = registry.models().dropna(subset=[column])
    u = np.log10(np.array([lr * epochs * fraction for lr, epochs, fraction in points]))
    result = {}
    for row in table.itertuples():
        optimum = (np.log10(LR_STAR_8B) - settings.size_exponent * np.log10(row.params_b / 8.0)
                   + _model_offset(row.name, seed, settings.lr_spread_decades))
        # The top such that the best point scores the published score (tops are far above the chance floor).
        penalty = np.min(shape.slope_low * np.maximum(0, optimum - u) + shape.slope_high * np.maximum(0, u - optimum))
        result[row.name] = Surface(row.name, row.params_b, optimum, float(getattr(row, column)) + penalty, shape)
    return result
