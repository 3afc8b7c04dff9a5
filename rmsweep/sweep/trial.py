"""One trial: a Ray Train TorchTrainer over the trial's worker group, fitting one reward model with the lr and
epochs its searcher sampled (Ray Train V2 cannot be passed to a Tuner, so a function trainable builds one)."""
import os
import re

import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from rmsweep.config import SweepConfig
from rmsweep.sweep.search import METRIC, MODE

TRIAL_DRIVER_CPUS = 0.01  # the trial function only waits on its worker group; Tune refuses a zero request
# Ray Train reads these from the environment of the process that builds a TorchTrainer (the trial) and passes
# them on to its controller; a value the job's environment already sets wins.
RAY_TRAIN_ENV = {
    # Ray Train gives up on a worker group after 60 s without resources; GPU nodes that an autoscaler starts
    # for it take minutes to boot.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "1800",
    # The controller polls its worker group every 2 s by default and a trial waits on several polls (start, end):
    # much of a short trial's fixed overhead (scripts/bench_overhead.py measures it). At 0.5 s: two small calls a
    # second per worker.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # The preemption watcher, one more process per trial (it imports torch: seconds of CPU), tells the training
    # loop ahead of a node's preemption; ours does not ask (a preempted worker group restarts from its latest
    # checkpoint, and Ray still charges that restart to the preemption budget).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def train_loop_per_worker(loop_config: dict) -> None:
    """What each worker of the trial's group runs. The training loop is imported here, on the worker: the trial's
    own process only waits on its worker group, and importing transformers there would cost every trial seconds
    of CPU."""
    from rmsweep.training.loop import train_loop_per_worker as fit

    fit(loop_config)


def set_ray_train_env() -> None:
    """Before a TorchTrainer is built: RAY_TRAIN_ENV, where the environment does not set a value already."""
    for name, value in RAY_TRAIN_ENV.items():
        os.environ.setdefault(name, value)


def run_name(model: str, lr: float, epochs: int, trial_id: str) -> str:
    """The trial's Ray Train run, as the dashboard lists it: which base model, lr and epochs it trains."""
    return f"{model}-lr{lr:.2e}-ep{epochs}-{trial_id}"


def run_trial(sampled: dict, sweep: SweepConfig, data_ref, checkpoint_storage: str, out_of_memory_dir: str) -> None:
    """One trial: fit a TorchTrainer with the lr and epochs its searcher sampled (`sampled`)."""
    # A resumed trial keeps its id, and so its Ray Train run, whose latest checkpoint it continues from.
    trial_id = sampled.get("resume_trial_id") or tune.get_context().get_trial_id()
    model = sampled["model"]
    config = sweep.trial_config(model, sampled["lr"], sampled["epochs"], out_of_memory_dir)
    placement = sweep.placements[model]
    # The trial driver's token CPU comes out of its workers' share: a trial reserves workers x cpus-per-worker.
    resources = {"CPU": placement.cpus_per_worker - TRIAL_DRIVER_CPUS / placement.workers,
                 "GPU": placement.gpus_per_worker}
    set_ray_train_env()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config, "data": data_ref},
        scaling_config=ray.train.ScalingConfig(
            num_workers=placement.workers, use_gpu=placement.gpus_per_worker > 0,
            resources_per_worker={k: v for k, v in resources.items() if v},
        ),
        run_config=ray.train.RunConfig(
            name=run_name(model, config.lr, config.epochs, trial_id),
            storage_path=checkpoint_storage,
            callbacks=[TuneReportCallback()],
            # Every evaluation carries a checkpoint; Ray Train keeps the best one and the latest (to resume from).
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=None if sweep.keep_checkpoints == "all" else 1,
                checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE,
            ),
            # A worker that dies (a lost node, a killed process) restarts the worker group from the latest one.
            failure_config=ray.train.FailureConfig(max_failures=sweep.max_failures),
        ),
    )
    trainer.fit()


def error_summary(error_text: str) -> str:
    """One line for the ledger from a failed trial's error (Ray Train's wraps each worker's traceback): the
    last exception line, `Type: message`, else the first line."""
    lines = [line.strip() for line in error_text.splitlines() if line.strip()]
    exceptions = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b.*:", line)]
    return (exceptions or lines or [""])[-1 if exceptions else 0]


