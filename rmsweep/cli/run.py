"""Sweep every base model of a family: python -m rmsweep.run --family gemma2 --scale tiny

Validates everything before any compute (flags, search space, every data row), runs one Ray Tune sweep
(an Optuna study per base model, TPE or a grid; ASHA per base model; one Ray Train TorchTrainer per trial),
scores each model's best checkpoint on the benchmarks, and leaves in <storage>/<name>/: trials.csv,
best_per_model.csv, selector.json, report.md (+ plots), scores/ (per-completion scores) and sweep.json.

Search spaces (--space NAME, in search_spaces/): default (a log-uniform lr range), paper-bt and
paper-regression (the grids of arXiv 2505.10775), rewardbench2 (the grid and Tulu 3 + Skywork mix of
RewardBench 2). Each names its data; --scale tiny swaps in the built-in corpus.
"""

import argparse
import io
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from rmsweep.sweep import placement
from rmsweep.data import registry
from rmsweep.analysis import scoring
from rmsweep.data import sources
from rmsweep.sweep import spaces
from rmsweep.sweep import storage
from rmsweep.data import token_cache

RM_TYPES = ("bt", "regression", "bnrm")
BT_VARIANTS = ("plain", "margin", "scaled")  # losses.BT_VARIANTS, without importing torch for --help
SAMPLERS = ("tpe", "grid")
WEIGHT_CHOICES = ("search", *scoring.PUBLISHED_WEIGHTS)
DEFAULT_TPE_SAMPLES = 4
ON_OFF_AUTO = {"on": True, "off": False, "auto": "auto"}
OUTPUTS = ("trials.csv", "best_per_model.csv", "selector.json", "report.md", "scores/", "sweep.json")


class UsageError(Exception):
    """Bad input, found before any compute: one line on stderr, exit status 2."""


def _auto_or(number_type):
    def parse(text: str):
        return None if text == "auto" else number_type(text)

    parse.__name__ = f"auto or {number_type.__name__}"  # argparse names the type in its error message
    return parse


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
        help="bt: Bradley-Terry on preference pairs; regression: 5 attribute heads, MSE, on ratings; "
        "bnrm: Bradley-Terry with the Bayesian non-negative head (+1e-5 KL) (default: bt)",
    )
    parser.add_argument(
        "--bt-loss",
        choices=BT_VARIANTS,
        default="plain",
        help="bt and bnrm: plain -log sigmoid(rc - rr); margin subtracts the pair's |strength| inside; "
        "scaled multiplies by it (default: plain)",
    )
    parser.add_argument(
        "--reward-centering", metavar="C", type=float, default=0.0,
        help="bt and bnrm: add C x mean((rc + rr)^2) to the loss; about 0.01 is usual (default: 0, off)",
    )
    parser.add_argument(
        "--regression-weights",
        choices=WEIGHT_CHOICES,
        default="search",
        help="regression: how the 5 attributes become one reward for pairwise benchmarks: search (the paper's "
        "21^5 grid on the validation pairs, per model) or a published vector (default: search)",
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
    parser.add_argument(
        "--space", metavar="NAME",
        help="search space search_spaces/NAME.yaml (default: the family's file, else default)",
    )
    parser.add_argument(
        "--sampler", choices=SAMPLERS, default="tpe",
        help="tpe: Optuna TPE per base model; grid: every (lr, epochs) point of a space whose lr is a list "
        "(default: tpe)",
    )
    parser.add_argument(
        "--num-samples", metavar="N", type=int,
        help=f"trials per base model (default: {DEFAULT_TPE_SAMPLES} with tpe, the whole grid with grid)",
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="let a model whose architecture transformers lacks run its repository's own Python code (e.g. "
        "Phi-3-small); off by default, since that code runs with your credentials. Weights are read from "
        "safetensors only, either way",
    )
    parser.add_argument(
        "--budget", metavar="STEPS", type=int,
        help="budget-aware sweep: spend at most STEPS trial-steps (optimizer steps summed over trials) with "
        "successive halving over base models, seeded by the selector's predictions, so that unpromising models "
        "get fewer trials (default: off, --num-samples trials per model)",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", type=Path,
        help="read each dataset from DIR/<source> (a folder or a .jsonl/.json/.parquet/.csv file in the hub "
        "schema) instead of the hub, e.g. DIR/helpsteer2-preference.jsonl",
    )
    parser.add_argument(
        "--workers-per-trial", metavar="N", type=_auto_or(int), default=None,
        help="data-parallel workers per trial; auto: 1 on a cluster without GPUs, else as many GPUs as the "
        "model's weights, gradients and AdamW state need (default: auto)",
    )
    parser.add_argument(
        "--cpus-per-worker", metavar="N", type=float, default=1.0, help="CPUs reserved per worker (default: 1)"
    )
    parser.add_argument(
        "--gpus-per-worker", metavar="N", type=_auto_or(float), default=None,
        help="GPUs per worker; auto: 1 if the cluster has GPUs, else 0 (default: auto)",
    )
    parser.add_argument(
        "--keep-checkpoints", choices=("best", "all", "none"), default="best",
        help="checkpoints left once trials finish: best (one per trial), all (every evaluation's), none "
        "(deleted once the best of each model is scored; scores/ keeps every completion's score) (default: best)",
    )
    parser.add_argument(
        "--max-failures", metavar="N", type=int, default=3,
        help="restarts of a trial whose worker dies (a lost node, a killed process), each from the trial's "
        "latest evaluation (default: 3)",
    )
    parser.add_argument(
        "--strategy", choices=placement.STRATEGIES, default="auto",
        help="how a trial's workers split the model: ddp (each holds it all), fsdp (each holds a shard); "
        "auto: fsdp where one GPU cannot hold the training state (default: auto)",
    )
    parser.add_argument(
        "--padding-free", choices=("auto", "on", "off"), default="auto",
        help="pack each micro-batch's sequences in one row instead of padding them; auto: where attention runs "
        "per packed sequence (flash-attention), else length-grouped padded micro-batches (default: auto)",
    )
    parser.add_argument(
        "--gradient-checkpointing", choices=("auto", "on", "off"), default="auto",
        help="recompute activations in the backward pass (less memory, about a third more compute); auto: where "
        "the training state and one micro-batch's activations (estimated from the model's config) would take more "
        "than 90%% of each GPU, and from the step that first runs out of memory "
        "without it, for that trial (a data-parallel one restarts, one of --max-failures) and the model's later "
        "ones (default: auto)",
    )
    parser.add_argument(
        "--gpu-memory-gb", metavar="GB", type=float, default=80.0,
        help="memory of one GPU, for the auto choices (default: 80, an A100/H100)",
    )
    parser.add_argument(
        "--storage",
        metavar="DIR|URI",
        default="rmsweep_runs",
        help="where run directories go: a local folder, a folder every node mounts (NFS), or s3://bucket/path, "
        "gs://bucket/path; a multi-node cluster needs one every node sees (default: ./rmsweep_runs)",
    )
    parser.add_argument("--name", help="run name (default: <family>-<rm-type>-<scale>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory of that name")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted sweep of this --storage and --name, with the same other flags: finished "
        "trials are kept, not run again; trials that were running go on from their latest checkpoint",
    )
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
    parser.add_argument(
        "--data-seed", metavar="N", type=int,
        help="seed for the data itself: the built-in corpus's draw and the shuffle of a training mix (default: "
             "--seed); keep it and change --seed to see how much a sweep's answer owes to its training seed",
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


def resolve(args: argparse.Namespace) -> tuple[dict, spaces.SearchSpace, storage.Location, storage.Location]:
    """Everything the sweep needs, validated: (settings, search space, storage root, run directory); raises
    UsageError before anything is written."""
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
        space = spaces.load(args.family, args.rm_type, args.scale, args.search_spaces, args.space)
        data_spec = sources.check_spec(space.data, args.rm_type)
        grid_size = None
        if args.sampler == "grid":
            space.grid()  # refuses a space whose lr is a range
            grid_size = space.grid_size()
    except (registry.RegistryError, spaces.SpaceError) as error:
        raise UsageError(str(error)) from None
    except sources.DataError as error:
        raise UsageError(f"{space.path}: {error}") from None
    num_samples = args.num_samples if args.num_samples is not None else grid_size or DEFAULT_TPE_SAMPLES
    if grid_size and num_samples > grid_size:
        raise UsageError(f"--num-samples {num_samples} exceeds the {grid_size} points of the grid in {space.path}")
    if args.rm_type == "regression" and (args.bt_loss != "plain" or args.reward_centering):
        raise UsageError("--bt-loss and --reward-centering apply to bt and bnrm RMs, not regression")
    if args.reward_centering < 0:
        raise UsageError(f"--reward-centering must be >= 0, got {args.reward_centering}")
    if args.data_dir and not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a folder")
    for flag, value in (
        ("--num-samples", num_samples),
        ("--workers-per-trial", args.workers_per_trial),
        ("--cpus-per-worker", args.cpus_per_worker),
        ("--gpu-memory-gb", args.gpu_memory_gb),
    ):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if args.budget is not None and args.budget <= 0:
        raise UsageError(f"--budget must be positive, got {args.budget}")
    if args.budget and args.num_samples is not None:
        raise UsageError("--budget decides how many trials each model gets: drop --num-samples")
    if args.budget and args.resume:
        raise UsageError("--resume does not continue a --budget sweep yet: start it again under a new --name")
    if args.max_failures < 0:
        raise UsageError(f"--max-failures must be >= 0, got {args.max_failures}")
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker}")
    training = space.training
    if args.workers_per_trial is not None:
        check_batch_split(training, args.workers_per_trial, space.path)
    if args.model_dir and args.scale == "tiny":
        raise UsageError("--model-dir loads real checkpoints; it cannot be combined with --scale tiny")
    if args.model_dir:
        missing = [n for n in members["name"] if not (args.model_dir / n / "config.json").exists()]
        if missing:
            raise UsageError(f"no checkpoint at {args.model_dir / missing[0]} (expected config.json there)")

    name = args.name or "-".join([args.family, args.rm_type, *([args.space] if args.space else []), args.scale])
    try:
        root = storage.Location(args.storage)
        run_dir = root.child(name)
        exists = run_dir.exists()
    except (OSError, ValueError) as error:  # an unknown scheme, a bucket that cannot be reached
        first_line = str(error).splitlines()[0]  # pyarrow's can run to pages (hdfs lists every JVM it tried)
        raise UsageError(f"storage {args.storage}: {first_line}") from None
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run directory and --overwrite replaces it: pass one of them")
    if args.resume and not run_dir.exists("sweep.json"):
        raise UsageError(f"nothing to resume: no sweep at {run_dir} (no sweep.json there)")
    if exists and not (args.overwrite or args.resume):
        raise UsageError(f"run directory {run_dir} already exists; pass --overwrite, --resume or another --name")
    if not root.writable():
        raise UsageError(f"storage {args.storage} is not writable")

    specs = {row["name"]: registry.model_spec(row, args.scale, args.model_dir, args.trust_remote_code)
             for _, row in members.iterrows()}
    if args.scale == "full" and not args.model_dir:
        check_hub_reachable(specs)
    # Each real model's layers and width, for the placement's activation estimate (a tiny twin's are negligible).
    shapes = {name: placement.model_shape(spec) for name, spec in specs.items()} if args.scale == "full" else {}
    settings = {
        "family": args.family,
        "rm_type": args.rm_type,
        "bt_variant": args.bt_loss,
        "reward_centering": args.reward_centering,
        "regression_weights": args.regression_weights,
        # Validation during training needs a fixed vector; a searched one is found after, per model.
        "validation_weights": list(scoring.PUBLISHED_WEIGHTS.get(args.regression_weights,
                                                                  scoring.PUBLISHED_WEIGHTS["nemotron-4-340b"])),
        "scale": args.scale,
        "name": name,
        "seed": args.seed,
        "data_seed": args.seed if args.data_seed is None else args.data_seed,
        "model_specs": specs,
        "sampler": args.sampler,
        "samples_per_model": num_samples,
        "workers_per_trial": args.workers_per_trial,
        "cpus_per_worker": args.cpus_per_worker,
        "gpus_per_worker": args.gpus_per_worker,
        "strategy": args.strategy,
        "gpu_memory_gb": args.gpu_memory_gb,
        "max_failures": args.max_failures,
        "budget_steps": args.budget,
        "priors": budget_priors(list(specs), args.rm_type) if args.budget else None,
        "keep_checkpoints": args.keep_checkpoints,
        "padding_free": ON_OFF_AUTO[args.padding_free],
        "gradient_checkpointing": ON_OFF_AUTO[args.gradient_checkpointing],
        # What the auto placement sizes: a tiny twin has well under a million parameters, whatever it stands for.
        "params_b": {row["name"]: 0.0 if args.scale == "tiny" else float(row["params_b"])
                     for _, row in members.iterrows()},
        "model_shapes": {name: shape and asdict(shape) for name, shape in shapes.items()},
        "training": training,
        "search_space": space.describe(),
        "data_spec": data_spec,
        "benchmarks": ["rewardbench", "rewardbench2"] if data_spec == "builtin"
        else [entry["source"] for entry in data_spec["eval"]],
    }
    return settings, space, root, run_dir


def budget_priors(names: list[str], rm_type: str) -> dict:
    """Each model's RewardBench score as the selector predicts it from the paper's published results: the order
    in which a budget-aware sweep favours them."""
    from rmsweep.analysis import selector

    return selector.predicted_quality(registry.models(), registry.nearest_published_columns(rm_type)["overall"],
                                      names)


def check_batch_split(training: dict, workers: int, where) -> None:
    if training["global_batch_size"] % (workers * training["micro_batch_size"]):
        raise UsageError(
            f"global batch {training['global_batch_size']} is not a multiple of workers-per-trial "
            f"({workers}) x micro-batch ({training['micro_batch_size']}) in {where}"
        )


def place_trials(settings: dict, run_root: storage.Location) -> dict:
    """Each model's worker group, checked against the cluster Ray is connected to; the sweep's storage checked
    to be one every node sees. Returns the settings to add; raises UsageError before any trial starts."""
    import ray

    shapes, totals = placement.cluster_capacity()
    training = settings["training"]
    placements = placement.plan(
        settings["params_b"], workers=settings["workers_per_trial"], cpus_per_worker=settings["cpus_per_worker"],
        gpus_per_worker=settings["gpus_per_worker"], strategy=settings["strategy"],
        gpu_memory_gb=settings["gpu_memory_gb"], cluster_has_gpus=totals.get("GPU", 0) > 0,
        gradient_checkpointing=None if settings["gradient_checkpointing"] == "auto"
        else settings["gradient_checkpointing"],
        model_shapes={name: placement.ModelShape(**shape) for name, shape in settings["model_shapes"].items() if shape},
        micro_batch_tokens=(training["micro_batch_size"] * training["max_length"]
                            * (1 if settings["rm_type"] == "regression" else 2)),  # a pair's two in one pass
    )
    problem = placement.unplaceable(placements, shapes, totals)
    if problem:
        raise UsageError(problem)
    for model, chosen in placements.items():
        check_batch_split(settings["training"], chosen.workers, f"{settings['search_space']['file']} (for {model})")
    unshared = storage.unshared_nodes(run_root)
    if unshared:
        raise UsageError(
            f"storage {run_root} is not shared: {len(unshared)} of {len(ray.nodes())} nodes cannot read what this "
            "node writes there; pass --storage s3://..., gs://... or a folder every node mounts"
        )
    return {"placements": {model: chosen.as_dict() for model, chosen in placements.items()},
            "max_concurrent_trials": placement.max_concurrent_trials(placements, totals)}


# What must not change between a sweep and its --resume (the data's fingerprints included).
RESUME_KEYS = ("family", "rm_type", "bt_variant", "reward_centering", "regression_weights", "scale", "seed",
               "model_specs", "sampler", "samples_per_model", "training", "search_space", "data_spec",
               "data_fingerprints", "budget_steps")


def resume_ledger(run_dir: storage.Location, settings: dict) -> list[dict]:
    """The ledger of the interrupted run, after checking that it was this same sweep."""
    stored = json.loads(run_dir.read_text("sweep.json"))
    for key in RESUME_KEYS:
        if stored.get(key) != json.loads(json.dumps(settings[key])):
            raise UsageError(f"--resume: {key} differs from the interrupted sweep's (in {run_dir}/sweep.json); "
                             "resume with the flags it was started with, or start a new --name")
    if not run_dir.exists("trials.csv"):
        return []
    import pandas as pd

    ledger = pd.read_csv(io.StringIO(run_dir.read_text("trials.csv"))).drop(columns="rm_type")
    return ledger.astype(object).where(ledger.notna(), None).to_dict("records")


def hf_token_record() -> str | None:
    """What sweep.json says of the Hugging Face token: whether one is set (HF_TOKEN or the token file that
    `hf auth login` writes, read by transformers on each node), never the token."""
    from huggingface_hub import get_token

    return "<redacted>" if get_token() else None


def versions() -> dict:
    packages = ("ray", "torch", "transformers", "datasets", "optuna", "scikit-learn", "pandas")
    return {"python": platform.python_version(), **{p: version(p) for p in packages}}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_families:
        print_families()
        return 0
    try:
        settings, space, root, run_dir = resolve(args)
        print("loading and checking the data ...", flush=True)
        data = sources.load(space.data, args.rm_type, args.data_dir, settings["data_seed"])
    except (UsageError, sources.DataError) as error:
        print(f"rmsweep.run: error: {error}", file=sys.stderr)
        return 2
    for account in data.accounts:
        print(f"  {account}", flush=True)
    settings.update(data_accounts=data.accounts, train_examples=len(data.train),
                    data_fingerprints={"train": token_cache.fingerprint(data.train),
                                       "validation": token_cache.fingerprint(data.validation)},
                    # Beside the runs, not in one: later sweeps on the same data and tokenizer reuse it.
                    token_cache=root.child("token_cache").uri)

    import pandas as pd
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from rmsweep.sweep import aggregate
    from rmsweep.analysis import report
    from rmsweep.sweep import tuner

    if not ray.is_initialized():  # a caller (tests, a notebook) may have started Ray already
        context = ray.init(
            address=os.environ.get("RAY_ADDRESS"), namespace="rmsweep", log_to_driver=False)
        print(f"Ray dashboard: http://{context.dashboard_url}", flush=True)
    try:
        settings.update(place_trials(settings, root))
        ledger = resume_ledger(run_dir, settings) if args.resume else []
    except UsageError as error:
        print(f"rmsweep.run: error: {error}", file=sys.stderr)
        return 2
    for model, chosen in settings["placements"].items():
        print(f"  {model}: {chosen['workers']} worker(s) x {chosen['cpus_per_worker']:g} CPU "
              f"{chosen['gpus_per_worker']:g} GPU, {chosen['strategy']}"
              + (", gradient checkpointing" if chosen["gradient_checkpointing"] else ""), flush=True)

    if args.resume:
        record = json.loads(run_dir.read_text("sweep.json"))
        record.pop("finished", None)
        record["resumed"] = [*record.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S")]
        started = record["started_unix"]
        print(f"resuming {run_dir}: {sum(row['status'] != 'running' for row in ledger)} trials finished, "
              f"{sum(row['status'] == 'running' for row in ledger)} to continue", flush=True)
    else:
        run_dir.remove()  # --overwrite, checked in resolve()
        run_dir.make()
        started = time.time()
        record = {**settings, "versions": versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "started_unix": round(started, 1), "hf_token": hf_token_record()}
    run_dir.write_text("sweep.json", json.dumps(record, indent=2))
    print(f"run directory: {run_dir}", flush=True)
    # Put in the object store once; every trial's workers and the scoring tasks read them from there.
    training_data = ray.put({"train": data.train, "validation": data.validation})
    evaluation_data = ray.put({"benchmarks": data.eval, "validation": data.validation})
    # On the driver's node (a cluster's head, never preemptible): the ledger must outlive any worker node.
    driver_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    aggregator = aggregate.Aggregator.options(name=aggregate.actor_name(settings["name"]),
                                              scheduling_strategy=driver_node).remote(
        run_dir, settings, [evaluation_data], [row for row in ledger if row["status"] != "running"]
    )
    try:
        tuner.run_sweep(settings, space, aggregator, run_dir, training_data, ledger)
        print("scoring each base model's best checkpoint and fitting the selector ...", flush=True)
        best = ray.get(aggregator.finalize.remote())
    finally:
        ray.kill(aggregator)  # frees its name for the next sweep of this name on a long-lived cluster

    record.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), wall_seconds=round(time.time() - started, 1))
    run_dir.write_text("sweep.json", json.dumps(record, indent=2))
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(best[report.best_columns(best)].to_string(index=False))
    print(f"\nresults in {run_dir}: {', '.join(OUTPUTS)} ({record['wall_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
