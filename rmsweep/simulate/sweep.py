"""A simulated sweep: the shipped searcher and per-model ASHA (inside Ray Tune with the ledger and aggregator, or
driven in-process: `engine.py`), with trials that report a response surface's curve (`surface.py`) or a recorded
sweep's curves (`replay.py`) instead of training, and the measure of what the sweep recommends against the truth.

A strategy is a way to run the shipped sweep (`STRATEGIES`): which sampler, how many trials per model, ASHA or
not, a trial-step budget or not, transfer or not; and one published baseline that is not rmsweep's.
"""
import itertools
import json
from dataclasses import dataclass, replace

import pandas as pd
import ray
from ray import tune

from rmsweep.config import SweepConfig
from rmsweep.data import candidates, registry
from rmsweep.simulate import engine as in_process
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
    first_evaluation_top_k: int | None = None  # Egele et al.'s baseline (see `first_evaluation_then_top_k`)


STRATEGIES = {
    "grid": Strategy("grid", asha=False),
    "random": Strategy("random", samples_per_model=4, asha=False),
    "grid+asha": Strategy("grid"),
    "1eval+top1": Strategy("grid", first_evaluation_top_k=1),
    "1eval+top3": Strategy("grid", first_evaluation_top_k=3),
    "tpe+asha": Strategy("tpe", samples_per_model=4),
    "tpe+asha+transfer": Strategy("tpe", samples_per_model=4, transfer=True),
    "gp+asha": Strategy("gp", samples_per_model=4),
    "budget": Strategy("grid", budget_share=0.3),
}
ENGINES = ("in-process", "tune")


def grid_trial_steps(problem) -> int:
    """Trial-steps of the whole grid, every trial to its end: what a strategy's spending is a share of."""
    space = problem.space
    return len(problem.models) * len(space.lr) * sum(space.epochs) * problem.steps_per_epoch


def simulated_problem(rm_type: str, space: spaces.SearchSpace, settings: SimulationSettings = SimulationSettings(),
                      seed: int = 0, models: list[str] | None = None) -> TrialSimulator:
    """The registry's models (or `models`) on their response surfaces, with the paper recipe's training pairs."""
    steps = TRAIN_PAIRS // space.training.global_batch_size
    points = tuple((lr, epochs, step / (epochs * steps)) for lr, epochs in itertools.product(space.lr, space.epochs)
                   for step in evaluation_steps(epochs * steps, space.training.eval_every))
    model_surfaces = surfaces(rm_type, points, settings, seed)
    chosen = {name: model_surfaces[name] for name in models or model_surfaces}
    return TrialSimulator(rm_type, space, TRAIN_PAIRS, chosen, settings, seed, points)


def sweep_config(problem, strategy: Strategy, run_dir: str, seed: int, concurrency: int) -> SweepConfig:
    space, models = problem.space, problem.models
    facts = {name: candidates.from_registry(registry.model(name)) for name in models}
    return SweepConfig(
        name=f"simulated-seed{seed}", run_dir=run_dir, family=None,
        models={name: candidates.model_spec(fact, "full") for name, fact in facts.items()}, facts=facts,
        params_b={name: fact.params_b for name, fact in facts.items()},
        space=space if strategy.asha else replace(space, asha=NO_ASHA),
        placements={name: Placement(1, TRIAL_DRIVER_CPUS, 0.0, "ddp") for name in models},
        max_concurrent_trials=concurrency, rm_type=problem.rm_type, scale="full", seed=seed,
        sampler=strategy.sampler, samples_per_model=strategy.samples_per_model or space.grid_size(),
        train_examples=problem.train_examples, transfer=strategy.transfer,
        budget_steps=round(strategy.budget_share * grid_trial_steps(problem)) if strategy.budget_share else None,
        priors=plan.budget_priors(models, problem.rm_type) if strategy.budget_share else None,
    )


def run(problem, strategy: Strategy, run_dir: str, seed: int, concurrency: int = 8,
        engine: str = "in-process") -> dict:
    """One sweep of `problem` (a `TrialSimulator`, or a `replay.Replay`); returns its measures (`measure`).
    `engine`: "tune" runs the shipped sweep in Ray Tune (Ray must be running), with its ledger and aggregator under
    `run_dir`; "in-process" drives the same searcher and scheduler without Tune's controller (`engine.py`)."""
    sweep = sweep_config(problem, strategy, run_dir, seed, concurrency)
    if strategy.first_evaluation_top_k:
        trials, curves = first_evaluation_then_top_k(problem, strategy.first_evaluation_top_k)
    elif engine == "tune":
        trials, curves = _run_in_tune(sweep, problem)
    else:
        trials, curves = _frames(in_process.run(tuner.searcher(sweep), tuner.scheduler(sweep), problem.reports,
                                                sweep.max_concurrent_trials))
    return measure(trials, curves, problem)


def _run_in_tune(sweep: SweepConfig, problem) -> tuple[pd.DataFrame, pd.DataFrame]:
    aggregator = aggregate.Aggregator.remote(sweep, [ray.put(None)])
    tuner.run_sweep(sweep, aggregator, None, trainable=tune.with_parameters(simulated_trial, simulator=problem))
    ray.get(aggregator.summary.remote())  # every ledger write before it has landed
    ray.kill(aggregator)
    location = storage.Location(sweep.run_dir)
    location.write_text("sweep.json", json.dumps(sweep.record(), indent=2, default=str))  # replayable
    return ledger.read(location), pd.DataFrame(ledger.read_curves(location))


def first_evaluation_then_top_k(problem, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The baseline of Egele et al. 2023 (arXiv 2307.15422), "one epoch for all, then the top K to the end",
    at the sweep's smallest fidelity: every grid point of each model runs to its first evaluation, then the K best
    of each model (by that evaluation) go on to their end. Synchronous, as published, so not a Tune scheduler; a
    continued trial is charged its whole length once."""
    ended = []
    for model in problem.models:
        trials = [in_process.SimulatedTrial(f"{model}-{lr:g}-{epochs}", {"model": model, "lr": lr, "epochs": epochs},
                                        problem.reports({"model": model, "lr": lr, "epochs": epochs}))
                  for lr, epochs in itertools.product(problem.space.lr, problem.space.epochs)]
        ranked = sorted(trials, key=lambda trial: trial.reports[0][METRIC], reverse=True)
        for rank, trial in enumerate(ranked):
            trial.made.extend(trial.reports if rank < k else trial.reports[:1])
        ended.extend(trials)
    return _frames(ended)


def _frames(ended: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials and curves, in the ledger's and curves.parquet's columns that `measure` reads."""
    trials = pd.DataFrame([{"trial_id": trial.trial_id, "model": trial.config["model"],
                            "steps": trial.made[-1]["step"], "total_steps": trial.made[-1]["total_steps"]}
                           for trial in ended])
    curves = pd.DataFrame([{"trial_id": trial.trial_id, "model": trial.config["model"], "lr": trial.config["lr"],
                            "epochs": trial.config["epochs"], "step": report["step"],
                            "val_accuracy": report[METRIC]} for trial in ended for report in trial.made])
    return trials, curves


def measure(trials: pd.DataFrame, curves: pd.DataFrame, problem) -> dict:
    """Simple regret (points): the true best checkpoint's score less the true score of the checkpoint the sweep
    recommends (its best validation accuracy), overall and within each size group; whether each group's true best
    model was picked; trial-steps spent."""
    best_evaluations = curves.sort_values("val_accuracy", ascending=False, kind="stable").drop_duplicates("trial_id")
    best_evaluations = best_evaluations.merge(trials[["trial_id", "total_steps"]], on="trial_id")
    best_evaluations["true"] = [problem.true_score(row.model, row.lr, row.epochs, row.step, row.total_steps)
                                for row in best_evaluations.itertuples()]
    size_groups = registry.models().set_index("name")["size_group"]
    best_evaluations["size_group"] = best_evaluations["model"].map(size_groups)
    truth = pd.DataFrame({"model": problem.models, "size_group": [size_groups[name] for name in problem.models],
                          "true": [problem.best_true(name) for name in problem.models]})
    top = best_evaluations.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
    figures = {"trial_steps": int(trials["steps"].sum()), "trials": len(trials),
               "recommended": (top["model"], float(top["lr"]), int(top["epochs"]), int(top["step"]))}
    for group, chosen in [("all", best_evaluations), *best_evaluations.groupby("size_group")]:
        candidates = truth if group == "all" else truth[truth["size_group"] == group]
        pick = chosen.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
        figures[f"regret_{group}"] = float(candidates["true"].max() - pick["true"])
        if group != "all":
            figures[f"picked_best_{group}"] = pick["model"] == candidates.sort_values("true").iloc[-1]["model"]
    return figures
