"""The simulator's trial function, in a module of its own: Tune starts a process for each trial actor, which
imports the function's module; this one leaves out the sweep's heavy imports (torch, transformers)."""
import zlib
from dataclasses import dataclass

import numpy as np
from ray import tune

from rmsweep.simulate.surface import SimulationSettings, Surface
from rmsweep.sweep.search import METRIC


def evaluation_steps(total_steps: int, eval_every: int) -> list[int]:
    """The steps a trial evaluates at, as the training loop does: every `eval_every` and the last."""
    return sorted({*range(eval_every, total_steps + 1, eval_every), total_steps})


@dataclass(frozen=True)
class TrialSimulator:
    """The reports a trial would make, from its model's surface."""
    model_surfaces: dict[str, Surface]
    settings: SimulationSettings
    seed: int
    steps_per_epoch: int
    eval_every: int

    def reports(self, sampled: dict) -> list[dict]:
        """The noise is drawn from (seed, model, lr, epochs), so every strategy meets the same draws for the same
        trial."""
        model = self.model_surfaces[sampled["model"]]
        lr, epochs = sampled["lr"], sampled["epochs"]
        total = epochs * self.steps_per_epoch
        rng = np.random.default_rng([self.seed, zlib.crc32(model.model.encode()), round(-np.log10(lr) * 1e6), epochs])
        seed_effect = rng.normal(0, self.settings.seed_sd_points * self.settings.noise_scale)
        best, reports = 0.0, []
        for step in evaluation_steps(total, self.eval_every):
            accuracy = model.observe(lr, epochs, step / total, seed_effect, self.settings, rng)
            best = max(best, accuracy)
            reports.append({
                "step": step, "total_steps": total, "epoch": -(-step // self.steps_per_epoch), METRIC: accuracy,
                "best_val_accuracy": best, "train_loss": float("nan"), "train_truncated": 0, "train_dropped": 0,
                "validation_dropped": 0, "diverged": False, "out_of_memory": "", "tokens_per_second": 0.0,
                "tokens_trained": 0, "resumed_from_step": 0, "startup_seconds": 0.0, "eval_seconds": 0.0,
                "layout": "simulated", "two_sequence_pairs": 0, "gradient_checkpointing": False,
                "loop_seconds": 0.0, "nodes": "simulated",
            })
        return reports


def simulated_trial(sampled: dict, simulator: TrialSimulator) -> None:
    """A trial function for Tune: reports the simulated curve instead of training."""
    for report in simulator.reports(sampled):
        tune.report(report)
