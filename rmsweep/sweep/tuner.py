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
import logging
import math

from ray import tune
from ray.tune.logger import TBXLoggerCallback

from rmsweep.config import SweepConfig
from rmsweep.sweep import interrupt, storage, transfer
from rmsweep.sweep.ledger import CONTINUED
from rmsweep.sweep.progress import LedgerCallback
from rmsweep.sweep.scheduler import PerModelASHA
from rmsweep.sweep.search import ORDERED_SAMPLERS, ModelHalving, PerModelSearcher
from rmsweep.sweep.trial import TRIAL_DRIVER_CPUS, run_trial

log = logging.getLogger(__name__)


class StopOnInterrupt(tune.Stopper):
    """After the first Ctrl-C, each running trial stops at its next report: an evaluation, with its checkpoint."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return interrupt.requested()

    def stop_all(self) -> bool:
        return False


def searcher(sweep: SweepConfig, finished: list[dict] = (), interrupted: list[dict] = ()) -> PerModelSearcher:
    """The sweep's searcher: a study per base model, its trials allocated evenly or within the budget."""
    space = sweep.space
    allocation, lr_prior = None, None
    if sweep.budget_steps:  # budget-aware: as many trials as the budget allows (none is resumed)
        allocation = ModelHalving(sweep.priors, sweep.budget_steps, max(space.epochs) * sweep.steps_per_epoch,
                                  max_trials_per_model=None if space.lr_is_range else space.grid_size())
    elif sweep.transfer:
        allocation = transfer.InOrderAllocation(sweep.params_b, sweep.samples_per_model)
        lr_prior = transfer.LearningRatePrior(sweep.params_b, (min(space.lr), max(space.lr)),
                                              sweep.families())
    ordered = sweep.sampler in ORDERED_SAMPLERS and not space.lr_is_range
    return PerModelSearcher(list(sweep.models), space.distributions(ordered), sweep.samples_per_model, sweep.seed,
                            sweep.sampler, finished, interrupted, allocation, lr_grid=space.lr if ordered else None,
                            lr_prior=lr_prior)


def scheduler(sweep: SweepConfig) -> PerModelASHA:
    """ASHA per base model, its horizon the longest trial's evaluations (every eval_every steps and the last)."""
    space = sweep.space
    max_evaluations = max(1, math.ceil(max(space.epochs) * sweep.steps_per_epoch / sweep.training.eval_every))
    return PerModelASHA(max_evaluations, space.asha["grace_period"], space.asha["reduction_factor"])


def run_sweep(sweep: SweepConfig, aggregator, data_ref, ledger: list[dict] = (), trainable=None) -> tune.ResultGrid:
    """One Tune run over every base model; `data_ref` holds the train and validation records. `ledger`: the
    trials of an interrupted run of this sweep (--resume): finished ones are not run again, running ones go on.
    `trainable`: a trial function of the sampled settings in place of training (the simulator's); its trials
    reuse their actors (a new process per trial would cost more than the trial). Real trials do not: where an
    ASHA-stopped trial's thread had not ended, Tune errored the next trial handed its actor instead of starting a
    new one (the README's sweep lost 2 of its 8 trials that way)."""
    run_dir = storage.Location(sweep.run_dir)
    finished = [row for row in ledger if row["status"] not in CONTINUED]
    interrupted = [row for row in ledger if row["status"] in CONTINUED]
    checkpoints = run_dir.child("checkpoints")
    simulated = trainable is not None
    trainable = trainable or tune.with_parameters(
        run_trial, sweep=sweep, data_ref=data_ref, checkpoint_storage=checkpoints.uri,
        # One file per base model that ran out of memory without checkpointing (see training/loop.py).
        out_of_memory_dir=run_dir.child("out_of_memory").uri)
    total = sweep.expected_trials
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"CPU": TRIAL_DRIVER_CPUS}),
        tune_config=tune.TuneConfig(
            search_alg=searcher(sweep, finished, interrupted),
            scheduler=scheduler(sweep),
            num_samples=-1 if total is None else total - len(finished),  # -1: until the searcher ends
            max_concurrent_trials=sweep.max_concurrent_trials,
            reuse_actors=simulated,
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=run_dir.uri, verbose=0, stop=StopOnInterrupt(),
            # A trial whose driver dies with its node is started again; its Ray Train run (named by the trial
            # id) goes on from its latest checkpoint.
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            callbacks=[LedgerCallback(aggregator, total, sweep.placements, checkpoints, len(finished), interrupted),
                       TBXLoggerCallback()],
        ),
    )
    if sweep.budget_steps:
        log.info("sweeping %d base model(s) within %s trial-steps (successive halving over models, seeded by the "
                 "selector), %d at a time", len(sweep.models), f"{sweep.budget_steps:,}", sweep.max_concurrent_trials)
    else:
        log.info("sweeping %d base model(s) x %d trials, %d at a time", len(sweep.models), sweep.samples_per_model,
                 sweep.max_concurrent_trials)
    return tuner.fit()
