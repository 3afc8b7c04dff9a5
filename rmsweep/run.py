"""Sweep every base model of a family: python -m rmsweep.run --family gemma2 --scale tiny

Validates everything before any compute, runs one Ray Tune sweep (Optuna TPE per base model, ASHA per base
model, one Ray Train TorchTrainer per trial), and leaves in <storage>/<name>/: trials.csv,
best_per_model.csv, selector.json, report.md (+ plots) and sweep.json.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path

from rmsweep import atomic, registry, spaces, synthetic

RM_TYPES = ("bt", "regression")
OUTPUTS = ("trials.csv", "best_per_model.csv", "selector.json", "report.md", "sweep.json")


class UsageError(Exception):
    """Bad input, found before any compute: one line on stderr, exit status 2."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rmsweep.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--family", metavar="KEY", help="family key to sweep, e.g. gemma2, qwen2.5, llama3.1 (see --list-families)"
    )
    parser.add_argument(
        "--models", nargs="+", metavar="NAME", help="only these models of the family (names or hub ids)"
    )
    parser.add_argument("--list-families", action="store_true", help="print the families and their models, then exit")
    parser.add_argument(
        "--rm-type",
        choices=RM_TYPES,
        default="bt",
        help="bt: Bradley-Terry on preference pairs; regression: 5 attribute heads, MSE (default: bt)",
    )
    parser.add_argument(
        "--scale",
        choices=("tiny", "full"),
        default="full",
        help="tiny: random-weight twins of each architecture, offline, minutes on a laptop; "
        "full: the real checkpoints (default: full)",
    )
    parser.add_argument(
        "--model-dir", metavar="DIR", type=Path, help="load real checkpoints from DIR/<model name> instead of the hub"
    )
    parser.add_argument("--num-samples", metavar="N", type=int, default=4, help="trials per base model (default: 4)")
    parser.add_argument(
        "--workers-per-trial", metavar="N", type=int, default=1, help="data-parallel workers per trial (default: 1)"
    )
    parser.add_argument(
        "--cpus-per-worker", metavar="N", type=float, default=1.0, help="CPUs reserved per worker (default: 1)"
    )
    parser.add_argument("--gpus-per-worker", metavar="N", type=float, default=0.0, help="GPUs per worker (default: 0)")
    parser.add_argument(
        "--storage",
        metavar="DIR",
        type=Path,
        default=Path("rmsweep_runs"),
        help="where run directories go (default: ./rmsweep_runs)",
    )
    parser.add_argument("--name", help="run name (default: <family>-<rm-type>-<scale>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory of that name")
    parser.add_argument(
        "--search-spaces",
        metavar="DIR",
        type=Path,
        default=spaces.DEFAULT_DIR,
        help="folder of <family>.yaml / default.yaml search spaces (default: the repo's)",
    )
    parser.add_argument(
        "--seed", metavar="N", type=int, default=0, help="seed for samplers, model init and data order (default: 0)"
    )
    return parser.parse_args(argv)


def print_families() -> None:
    table = registry.models().set_index("name")
    for key, names in registry.families().items():
        print(key)
        for name in names:
            row = table.loc[name]
            print(f"  {name:36s} {row['params_b']:>5.2f}B  {row['size_group']:5s} {row['stage']:9s} {row['hf_id']}")


def check_hub_reachable(specs: dict) -> None:
    """Real checkpoints need the hub (or --model-dir): fail at once when it cannot be reached."""
    from huggingface_hub import HfApi

    for source in (spec["source"] for spec in specs.values()):
        try:
            HfApi().model_info(source, timeout=10)
        except Exception as error:  # offline mode, DNS, refused, timeout, gated without a token
            raise UsageError(
                f"cannot reach the Hugging Face hub for {source} ({type(error).__name__}); "
                "use --scale tiny to run offline, or --model-dir DIR with the checkpoints in DIR/<model name>"
            ) from None


def resolve(args: argparse.Namespace) -> tuple[dict, spaces.SearchSpace, Path]:
    """Everything the sweep needs, validated; raises UsageError before anything is written."""
    if not args.family:
        raise UsageError("--family is required (see --list-families)")
    try:
        members = registry.family(args.family)
        if args.models:
            chosen = {registry.model(name)["name"] for name in args.models}
            outside = sorted(chosen - set(members["name"]))
            if outside:
                raise UsageError(f"model {outside[0]!r} is not in family {args.family!r}")
            members = members[members["name"].isin(chosen)]
        space = spaces.load(args.family, args.rm_type, args.scale, args.search_spaces)
    except (registry.RegistryError, spaces.SpaceError) as error:
        raise UsageError(str(error)) from None
    for flag, value in (
        ("--num-samples", args.num_samples),
        ("--workers-per-trial", args.workers_per_trial),
        ("--cpus-per-worker", args.cpus_per_worker),
    ):
        if value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if args.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker}")
    training = space.training
    if training["global_batch_size"] % (args.workers_per_trial * training["micro_batch_size"]):
        raise UsageError(
            f"global batch {training['global_batch_size']} is not a multiple of workers-per-trial "
            f"({args.workers_per_trial}) x micro-batch ({training['micro_batch_size']}) in {space.path}"
        )
    if args.model_dir and args.scale == "tiny":
        raise UsageError("--model-dir loads real checkpoints; it cannot be combined with --scale tiny")
    if args.model_dir:
        missing = [n for n in members["name"] if not (args.model_dir / n / "config.json").exists()]
        if missing:
            raise UsageError(f"no checkpoint at {args.model_dir / missing[0]} (expected config.json there)")

    name = args.name or f"{args.family}-{args.rm_type}-{args.scale}"
    run_dir = (args.storage / name).resolve()
    if run_dir.exists() and not args.overwrite:
        raise UsageError(f"run directory {run_dir} already exists; pass --overwrite or another --name")
    probe = run_dir.parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UsageError(f"storage {args.storage} is not writable")

    specs = {row["name"]: registry.model_spec(row, args.scale, args.model_dir) for _, row in members.iterrows()}
    if args.scale == "full" and not args.model_dir:
        check_hub_reachable(specs)
    settings = {
        "family": args.family,
        "rm_type": args.rm_type,
        "scale": args.scale,
        "name": name,
        "seed": args.seed,
        "data_seed": args.seed,
        "model_specs": specs,
        "samples_per_model": args.num_samples,
        "workers_per_trial": args.workers_per_trial,
        "cpus_per_worker": args.cpus_per_worker,
        "gpus_per_worker": args.gpus_per_worker,
        "training": training,
        "train_examples": synthetic.TRAIN_PAIRS * (2 if args.rm_type == "regression" else 1),  # ratings: 2 per pair
        "regression_weights": list(synthetic.NEMOTRON_WEIGHTS),
        "search_space": {
            "file": str(space.path),
            "lr": [space.lr_low, space.lr_high],
            "epochs": list(space.epochs),
            "asha": space.asha,
        },
    }
    return settings, space, run_dir


def unplaceable_request(settings: dict, cluster: dict) -> str | None:
    """Why one trial's worker group can never start on this cluster, or None if it can."""
    for resource, per_worker in (("CPU", settings["cpus_per_worker"]), ("GPU", settings["gpus_per_worker"])):
        needed, available = settings["workers_per_trial"] * per_worker, cluster.get(resource, 0)
        if needed > available:
            return (
                f"a trial needs {needed:g} {resource} ({settings['workers_per_trial']} workers x {per_worker:g}) "
                f"but the cluster has {available:g}; lower --workers-per-trial or --{resource.lower()}s-per-worker"
            )
    return None


def versions() -> dict:
    packages = ("ray", "torch", "transformers", "datasets", "optuna", "scikit-learn", "pandas")
    return {"python": platform.python_version(), **{p: version(p) for p in packages}}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_families:
        print_families()
        return 0
    try:
        settings, space, run_dir = resolve(args)
    except UsageError as error:
        print(f"rmsweep.run: error: {error}", file=sys.stderr)
        return 2

    import pandas as pd
    import ray

    from rmsweep import aggregate, report, sweep

    if not ray.is_initialized():  # a caller (tests, a notebook) may have started Ray already
        context = ray.init(address=os.environ.get("RAY_ADDRESS"), namespace="rmsweep", log_to_driver=False)
        print(f"Ray dashboard: http://{context.dashboard_url}", flush=True)
    unplaceable = unplaceable_request(settings, ray.cluster_resources())
    if unplaceable:
        print(f"rmsweep.run: error: {unplaceable}", file=sys.stderr)
        return 2

    if run_dir.exists():
        shutil.rmtree(run_dir)  # --overwrite, checked in resolve()
    run_dir.mkdir(parents=True)
    started = time.time()
    record = {**settings, "versions": versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic.write_text(run_dir / "sweep.json", json.dumps(record, indent=2))
    print(f"run directory: {run_dir}", flush=True)
    aggregator = aggregate.Aggregator.options(name=aggregate.actor_name(settings["name"])).remote(
        os.fspath(run_dir), settings
    )
    sweep.run_sweep(settings, space, aggregator, run_dir)
    print("scoring each base model's best checkpoint and fitting the selector ...", flush=True)
    best = ray.get(aggregator.finalize.remote())

    record.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), wall_seconds=round(time.time() - started, 1))
    atomic.write_text(run_dir / "sweep.json", json.dumps(record, indent=2))
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(best[report.BEST_COLUMNS].to_string(index=False))
    print(f"\nresults in {run_dir}: {', '.join(OUTPUTS)} ({record['wall_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
