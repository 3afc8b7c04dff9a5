"""Per-trial fixed overhead of the Ray layer: the same tiny trial run in this process, and through Ray Train's
TorchTrainer (one worker) as a sweep runs it, side by side in one run; through Ray Train with Ray's defaults
instead of the settings a sweep gives it (`trial.RAY_TRAIN_ENV`: the controller's poll interval, no preemption
watcher); and as a sweep sets it but with the preemption watcher on (one more process per trial).

    python scripts/bench_overhead.py
    python scripts/bench_overhead.py --repeats 3

All runs train the same model on the same data (a tiny gemma2 twin, the built-in corpus, one epoch); the
difference is what Ray adds per trial: starting the worker group (a process that imports torch and
transformers), the controller, reports and checkpoint uploads to storage, teardown. `ray.init` is paid once
per sweep and printed apart. A sweep's report.md shows the same overhead measured on every trial
(`ray_overhead_seconds`: a trial's wall time outside its training loop).
"""
import argparse
import os
import tempfile
import time

import pandas as pd

from rmsweep.config import ModelSpec, TrainConfig, TrainingSettings
from rmsweep.data import sources
from rmsweep.sweep import trial
from rmsweep.training import loop

CONFIG = TrainConfig(model="gemma-2-2b-it", model_spec=ModelSpec("tiny", "gemma2"), lr=1e-3, epochs=1,
                     training=TrainingSettings(global_batch_size=32, micro_batch_size=16, eval_every=16,
                                               max_length=128),
                     gradient_checkpointing=False)


RAY_TRAIN, RAY_DEFAULTS = "Ray Train, as a sweep sets it", "Ray Train, Ray's defaults"
WATCHER = "Ray Train, as a sweep sets it, preemption watcher on"


def in_process(config: TrainConfig, records: dict) -> dict:
    reports = []
    started = time.perf_counter()
    loop.fit_reward_model(config, records, lambda metrics, checkpoint: reports.append(metrics))
    return {"wall_seconds": time.perf_counter() - started, "loop_seconds": reports[-1]["loop_seconds"],
            "val_accuracy": reports[-1]["val_accuracy"]}


def through_ray_train(config: TrainConfig, records: dict, storage_path: str, name: str,
                      sweep_settings: bool, watcher: bool = False) -> dict:
    import ray.train
    from ray.train.torch import TorchTrainer

    for variable in trial.RAY_TRAIN_ENV:  # Ray Train reads them when the trainer starts
        os.environ.pop(variable, None)
    if sweep_settings:
        trial.set_ray_train_env()
    if watcher:
        os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "1"
    trainer = TorchTrainer(
        loop.train_loop_per_worker, train_loop_config={"config": config, "data": records},
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=False),
        run_config=ray.train.RunConfig(name=name, storage_path=storage_path,
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    )
    started = time.perf_counter()
    result = trainer.fit()
    return {"wall_seconds": time.perf_counter() - started, "loop_seconds": result.metrics["loop_seconds"],
            "val_accuracy": result.metrics["val_accuracy"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating (default: 2)")
    parser.add_argument("--train-pairs", type=int, default=2048,
                        help="training pairs of the built-in corpus, 32 a step (default: 2048, 64 steps)")
    args = parser.parse_args(argv)

    import ray

    data = sources.builtin("bt")
    records = {"train": data.train[: args.train_pairs], "validation": data.validation}
    started = time.perf_counter()
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    ray_init_seconds = time.perf_counter() - started
    runs = []
    with tempfile.TemporaryDirectory() as storage_path:
        for repeat in range(args.repeats):  # alternating, so that machine noise falls on both alike
            runs.append({"run": "in this process", **in_process(CONFIG, records)})
            runs.append({"run": RAY_TRAIN, **through_ray_train(CONFIG, records, storage_path, f"trial-{repeat}", True)})
            runs.append({"run": WATCHER, **through_ray_train(CONFIG, records, storage_path, f"watcher-{repeat}",
                                                             True, watcher=True)})
            runs.append({"run": RAY_DEFAULTS,
                         **through_ray_train(CONFIG, records, storage_path, f"default-{repeat}", False)})
            print(f"  repeat {repeat + 1}: {runs[-4]['wall_seconds']:.1f} s in process, "
                  f"{runs[-3]['wall_seconds']:.1f} s through Ray Train as a sweep sets it, "
                  f"{runs[-2]['wall_seconds']:.1f} s with the preemption watcher, "
                  f"{runs[-1]['wall_seconds']:.1f} s with Ray's defaults", flush=True)
    ray.shutdown()

    table = pd.DataFrame(runs)
    table["outside_loop_seconds"] = table["wall_seconds"] - table["loop_seconds"]
    medians = table.groupby("run", sort=False).median()
    print(f"\nray.init (once per sweep): {ray_init_seconds:.1f} s; medians of {args.repeats} runs each:\n")
    print(medians.to_string(float_format=lambda x: f"{x:.2f}"))
    plain, ray_train, watcher, defaults = (medians.loc[run] for run in ("in this process", RAY_TRAIN, WATCHER,
                                                                         RAY_DEFAULTS))
    overhead = ray_train["wall_seconds"] - plain["wall_seconds"]
    watcher_overhead = watcher["wall_seconds"] - plain["wall_seconds"]
    defaults_overhead = defaults["wall_seconds"] - plain["wall_seconds"]
    ratio = ray_train["wall_seconds"] / plain["wall_seconds"]
    print(f"\nRay's fixed overhead per trial: {overhead:.1f} s ({ratio:.2f}x the in-process wall time); "
          f"outside the training loop: {ray_train['outside_loop_seconds']:.1f} s. "
          f"With the preemption watcher: {watcher_overhead:.1f} s ({watcher_overhead / overhead:.2f}x). "
          f"With Ray's defaults: {defaults_overhead:.1f} s ({defaults_overhead / overhead:.2f}x)")
    print(f"RESULT ray_overhead_seconds={overhead:.2f} wall_ratio={ratio:.3f} "
          f"outside_loop_seconds={ray_train['outside_loop_seconds']:.2f} ray_init_seconds={ray_init_seconds:.2f} "
          f"in_process_seconds={plain['wall_seconds']:.2f} ray_defaults_overhead_seconds={defaults_overhead:.2f} "
          f"defaults_to_sweep_overhead_ratio={defaults_overhead / overhead:.3f} "
          f"watcher_overhead_seconds={watcher_overhead:.2f} watcher_to_sweep_overhead_ratio="
          f"{watcher_overhead / overhead:.3f}")


if __name__ == "__main__":
    main()
