"""A simulated sweep problem (`TrialSimulator`: the reports a trial makes, and the truth) and its trial function
for Tune, in a module of their own: Tune starts a process for each trial actor, which imports the function's
module; this one leaves out the sweep's heavy imports (torch, transformers)."""
import zlib
from dataclasses import dataclass

import numpy as np
from ray import tune

from rmsweep.simulate.surface import SimulationSettings, Surface
from rmsweep.sweep.search import METRIC
from rmsweep.sweep.spaces import SearchSpace


def evaluation_steps(total_steps: int, eval_every: int) -> list[int]:
    """The steps a trial evaluates at, as the training loop does: every `eval_every` and the last."""
    return sorted({*range(eval_every, total_steps + 1, eval_every), total_steps})


@dataclass(frozen=True)
class TrialSimulator:
    """A simulated sweep problem: the reports a trial would make, from its model's surface, and the truth they are
    measured against."""
    rm_type: str
    space: SearchSpace
    train_examples: int
    model_surfaces: dict[str, Surface]  # the models swept
    settings: SimulationSettings
    seed: int
    points: tuple  # (lr, epochs, fraction of the steps) of every checkpoint the grid can recommend

    @property
    def models(self) -> list[str]:
        return list(self.model_surfaces)

    @property
    def steps_per_epoch(self) -> int:
        return self.train_examples // self.space.training.global_batch_size

    def true_score(self, model: str, lr: float, epochs: int, step: int, total_steps: int) -> float:
        return float(self.model_surfaces[model].true_score(lr, epochs, step / total_steps))

    def best_true(self, model: str) -> float:
        lrs, epochs, fractions = (np.array(column) for column in zip(*self.points))
        return float(self.model_surfaces[model].true_score(lrs, epochs, fractions).max())

    def reports(self, sampled: dict) -> list[dict]:
        """The noise is drawn from (seed, model, lr, epochs), so every strategy meets the same draws for the same
        trial."""
        model = self.model_surfaces[sampled["model"]]
        lr, epochs = sampled["lr"], sampled["epochs"]
        total, eval_every = epochs * self.steps_per_epoch, self.space.training.eval_every
        rng = np.random.default_rng([self.seed, zlib.crc32(model.model.encode()), round(-np.log10(lr) * 1e6), epochs])
        seed_effect = rng.normal(0, self.settings.seed_sd_points * self.settings.noise_scale)
        best, reports = 0.0, []
        for step in evaluation_steps(total, eval_every):
            accuracy = model.observe(lr, epochs, step / total, seed_effect, self.settings, rng)
            best = max(best, accuracy)
            reports.append(report(step, total, self.steps_per_epoch, accuracy, best))
        return reports


def report(step: int, total_steps: int, steps_per_epoch: int, accuracy: float, best: float) -> dict:
    """What a real trial reports at an evaluation (training/loop.py), with the simulated values."""
    return {
        "step": step, "total_steps": total_steps, "epoch": -(-step // steps_per_epoch), METRIC: accuracy,
        "best_val_accuracy": best, "train_loss": float("nan"), "train_truncated": 0, "train_dropped": 0,
        "validation_dropped": 0, "diverged": False, "out_of_memory": "", "tokens_per_second": 0.0,
        "tokens_trained": 0, "resumed_from_step": 0, "startup_seconds": 0.0, "eval_seconds": 0.0,
        "layout": "simulated", "two_sequence_pairs": 0, "gradient_checkpointing": False, "loop_seconds": 0.0,
        "nodes": "simulated",
    }


def simulated_trial(sampled: dict, simulator: TrialSimulator) -> None:
    """A trial function for Tune: reports the simulated curve instead of training."""
    for report in simulator.reports(sampled):
        tune.report(report)
