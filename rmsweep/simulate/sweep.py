"""A simulated sweep: the shipped searcher, per-model ASHA, ledger and aggregator inside Ray Tune, with a trial
function that reports a response surface's curve (`surface.py`) instead of training, and the measure of what the
sweep recommends against the true best.

A strategy is a way to run the shipped sweep (`STRATEGIES`): which sampler, how many trials per model, ASHA or
not, a trial-step budget or not.
"""
import itertools
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import ray
from ray import tune

from rmsweep.config import ModelSpec, SweepConfig
from rmsweep.data import registry
from rmsweep.simulate import engine
from rmsweep.simulate.surface import SimulationSettings, surfaces
from rmsweep.simulate.trial import TrialSimulator, evaluation_steps, simulated_trial
from rmsweep.sweep import aggregate, ledger, plan, spaces, storage, tuner
from rmsweep.sweep.placement import Placement
from rmsweep.sweep.search import METRIC
from rmsweep.sweep.trial import TRIAL_DRIVER_CPUS

TRAIN_PAIRS = 6766  # HelpSteer2-Preference's train pairs after dropping ties (the paper's BT data)
NO_ASHA = {"grace_period": 10**6, "reduction_factor": 2}  # a grace period no trial reaches: nothing is stopped


@dataclass(frozen=True)
class Strategy:
    sampler: str  # one of config.SAMPLERS
    samples_per_model: int | None = None  # None: the whole grid
    asha: bool = True
    budget_share: float | None = None  # trial-steps to spend, as a share of the full grid's
    transfer: bool = False  # models in turn, each starting at the lr its predecessors predict


STRATEGIES = {
    "grid": Strategy("grid", asha=False),
    "random": Strategy("random", samples_per_model=4, asha=False),
    "grid+asha": Strategy("grid"),
    "tpe+asha": Strategy("tpe", samples_per_model=4),
    "tpe+asha+transfer": Strategy("tpe", samples_per_model=4, transfer=True),
    "gp+asha": Strategy("gp", samples_per_model=4),
    "budget": Strategy("grid", budget_share=0.3),
}


def steps_per_epoch(space: spaces.SearchSpace) -> int:
    return TRAIN_PAIRS // space.training.global_batch_size


def grid_trial_steps(space: spaces.SearchSpace, models: int) -> int:
    """Trial-steps of the whole grid, every trial to its end: what a strategy's spending is a share of."""
    return models * len(space.lr) * sum(space.epochs) * steps_per_epoch(space)


def sweep_config(rm_type: str, space: spaces.SearchSpace, strategy: Strategy, run_dir: str, seed: int,
                 models: list[str], concurrency: int) -> SweepConfig:
    table = registry.models().set_index("name").loc[models]
    return SweepConfig(
        name=f"simulated-seed{seed}", run_dir=run_dir, family=None,
        models={name: ModelSpec(row.hf_id, row.architecture) for name, row in table.iterrows()},
        params_b=table["params_b"].to_dict(), space=space if strategy.asha else replace(space, asha=NO_ASHA),
        placements={name: Placement(1, TRIAL_DRIVER_CPUS, 0.0, "ddp") for name in models},
        max_concurrent_trials=concurrency, rm_type=rm_type, scale="full", seed=seed, sampler=strategy.sampler,
        samples_per_model=strategy.samples_per_model or space.grid_size(), train_examples=TRAIN_PAIRS,
        transfer=strategy.transfer,
        budget_steps=round(strategy.budget_share * grid_trial_steps(space, len(models))) if strategy.budget_share
        else None,
        priors=plan.budget_priors(models, rm_type) if strategy.budget_share else None,
    )


ENGINES = ("in-process", "tune")


def run(rm_type: str, space: spaces.SearchSpace, strategy: Strategy, run_dir: str, seed: int,
        settings: SimulationSettings = SimulationSettings(), models: list[str] | None = None,
        concurrency: int = 8, engine: str = "in-process") -> dict:
    """One simulated sweep; returns its measures (`measure`). `engine`: "tune" runs the shipped sweep in Ray Tune
    (Ray must be running), with its ledger and aggregator under `run_dir`; "in-process" drives the same searcher and
    scheduler without Tune's controller (`engine.py`), much faster."""
    steps = steps_per_epoch(space)
    points = [(lr, epochs, step / (epochs * steps)) for lr, epochs in itertools.product(space.lr, space.epochs)
              for step in evaluation_steps(epochs * steps, space.training.eval_every)]
    model_surfaces = surfaces(rm_type, points, settings, seed)
    models = models or list(model_surfaces)
    sweep = sweep_config(rm_type, space, strategy, run_dir, seed, models, concurrency)
    simulator = TrialSimulator(model_surfaces, settings, seed, steps, space.training.eval_every)
    trials, curves = (_run_in_tune if engine == "tune" else _run_in_process)(sweep, simulator)
    return measure(trials, curves, {name: model_surfaces[name] for name in models}, points)


def _run_in_tune(sweep: SweepConfig, simulator: TrialSimulator) -> tuple[pd.DataFrame, pd.DataFrame]:
    aggregator = aggregate.Aggregator.remote(sweep, [ray.put(None)])
    tuner.run_sweep(sweep, aggregator, None, trainable=tune.with_parameters(simulated_trial, simulator=simulator))
    ray.get(aggregator.summary.remote())  # every ledger write before it has landed
    ray.kill(aggregator)
    location = storage.Location(sweep.run_dir)
    return ledger.read(location), pd.DataFrame(ledger.read_curves(location))


def _run_in_process(sweep: SweepConfig, simulator: TrialSimulator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials and curves, in the ledger's and curves.parquet's columns that `measure` reads."""
    ended = engine.run(tuner.searcher(sweep), tuner.scheduler(sweep), simulator.reports, sweep.max_concurrent_trials)
    trials = pd.DataFrame([{"trial_id": trial.trial_id, "model": trial.config["model"],
                            "steps": trial.made[-1]["step"], "total_steps": trial.made[-1]["total_steps"]}
                           for trial in ended])
    curves = pd.DataFrame([{"trial_id": trial.trial_id, "model": trial.config["model"], "lr": trial.config["lr"],
                            "epochs": trial.config["epochs"], "step": report["step"],
                            "val_accuracy": report[METRIC]} for trial in ended for report in trial.made])
    return trials, curves


def measure(trials: pd.DataFrame, curves: pd.DataFrame, model_surfaces: dict, points: list) -> dict:
    """Simple regret (points): the true best checkpoint's score less the true score of the checkpoint the sweep
    recommends (its best validation accuracy), overall and within each size group; whether each group's true best
    model was picked; trial-steps spent."""
    best_evaluations = curves.sort_values("val_accuracy", ascending=False, kind="stable").drop_duplicates("trial_id")
    best_evaluations = best_evaluations.merge(trials[["trial_id", "total_steps"]], on="trial_id")
    best_evaluations["true"] = [
        float(model_surfaces[row.model].true_score(row.lr, row.epochs, row.step / row.total_steps))
        for row in best_evaluations.itertuples()]
    best_evaluations["size_group"] = best_evaluations["model"].map(registry.models().set_index("name")["size_group"])
    lrs, epochs, fractions = (np.array(column) for column in zip(*points))
    truth = pd.DataFrame({"model": list(model_surfaces), "size_group": [
        registry.model(name)["size_group"] for name in model_surfaces], "true": [
        float(surface.true_score(lrs, epochs, fractions).max()) for surface in model_surfaces.values()]})
    figures = {"trial_steps": int(trials["steps"].sum()), "trials": len(trials)}
    for group, chosen in [("all", best_evaluations), *best_evaluations.groupby("size_group")]:
        candidates = truth if group == "all" else truth[truth["size_group"] == group]
        pick = chosen.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
        figures[f"regret_{group}"] = float(candidates["true"].max() - pick["true"])
        if group != "all":
            figures[f"picked_best_{group}"] = pick["model"] == candidates.sort_values("true").iloc[-1]["model"]
    return figures
