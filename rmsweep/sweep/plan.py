"""From the user's request to one validated SweepConfig: models, search space, data spec, storage, placement.

Every check here runs before anything is written: a problem raises UsageError, which the CLI prints as one
line and exit status 2.
"""
import argparse
import importlib.util
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

from rmsweep.analysis import scoring
from rmsweep.config import AUTO, SweepConfig
from rmsweep.data import candidates, registry, sources, token_cache
from rmsweep.sweep import claim, placement, spaces, storage

DEFAULT_TPE_SAMPLES = 4
AGGREGATOR_PREFIX = "rmsweep-aggregator-"  # + the run's name: each sweep's aggregator actor
log = logging.getLogger(__name__)
ON_OFF_AUTO = {"on": True, "off": False, "auto": AUTO}


class UsageError(Exception):
    """Bad input, found before any compute: one line on stderr, exit status 2."""


@dataclass(frozen=True)
class Request:
    """What the user asked for, checked; the data and the cluster are not read yet."""
    name: str
    models: dict  # name -> ModelSpec
    facts: dict  # name -> candidates.Candidate
    params_b: dict
    model_shapes: dict
    space: spaces.SearchSpace
    data_spec: object
    samples_per_model: int
    root: storage.Location
    run_dir: storage.Location


def check_flags(args: argparse.Namespace) -> None:
    """Flags that are wrong on their own or together, whatever the models and space."""
    if not (args.family or args.models or args.model_set):
        raise UsageError("name the base models: --family KEY, --models NAME|HUB_ID|FOLDER ... or --model-set FILE; "
                         "see --list-families")
    if args.model_set and (args.family or args.models):
        raise UsageError("--model-set names the models itself: drop --family and --models")
    if args.rm_type == "regression" and (args.bt_loss != "plain" or args.reward_centering):
        raise UsageError("--bt-loss and --reward-centering apply to bt and bnrm RMs, not regression")
    for flag, value in (("--reward-centering", args.reward_centering), ("--max-failures", args.max_failures),
                        ("--gpus-per-worker", args.gpus_per_worker)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be >= 0, got {value}")
    for flag, value in (("--num-samples", args.num_samples), ("--workers-per-trial", args.workers_per_trial),
                        ("--max-concurrent-trials", args.max_concurrent_trials),
                        ("--cpus-per-worker", args.cpus_per_worker), ("--gpu-memory-gb", args.gpu_memory_gb),
                        ("--budget", args.budget)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if args.pin and not args.triage:
        raise UsageError("--pin keeps candidates through --triage: pass --triage K too")
    if args.triage is not None and args.triage <= 0:
        raise UsageError(f"--triage must be positive, got {args.triage}")
    if args.features_data_dir and not args.features_data_dir.is_dir():
        raise UsageError(f"--features-data-dir {args.features_data_dir} is not a folder")
    if args.budget and args.transfer:
        raise UsageError("--budget and --transfer each choose which model gets the next trial: use one")
    if args.budget and args.num_samples is not None:
        raise UsageError("--budget decides how many trials each model gets: drop --num-samples")
    if args.budget and args.resume:
        raise UsageError("--resume does not continue a --budget sweep yet: start it again under a new --name")
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run directory and --overwrite replaces it: pass one of them")
    if args.scale == "tiny" and args.model_dir:
        raise UsageError("--model-dir has no effect with --scale tiny (tiny twins are built from configs); drop it, "
                         "or use --scale full")
    if args.liger and importlib.util.find_spec("liger_kernel") is None:
        raise UsageError("--liger needs the liger-kernel package (pip install liger-kernel) on every node")
    if args.attention == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise UsageError("--attention flash_attention_2 needs the flash-attn package on every node")
    if args.data_dir and not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a folder")


def requested_entries(args: argparse.Namespace) -> list:
    """What the user named: registry rows (pandas Series) and other candidates (candidates.Entry), in order."""
    if args.model_set:
        return model_set_items(args.model_set)
    members = registry.family(args.family) if args.family else registry.models()
    if not args.models:
        return [row for _, row in members.iterrows()]
    named = []
    for text in args.models:
        row = registry.find(text)
        if row is None:
            entry = candidates.entry_from_argument(text)
            if entry is None:
                registry.model(text)  # a plain name the registry lacks: raises its error, naming the nearest
            named.append(entry)
            continue
        if args.family and row["family_key"] != args.family:
            raise UsageError(f"model {row['name']!r} is not in family {args.family!r}")
        named.append(row)
    return named


def model_set_items(path: Path) -> list:
    """A model-set file's candidates: a registry model (its source a registry name or hub id, no revision) as its
    registry row, which must carry the registry's name (the name its published results and a sweep's analyses
    know it by); any other as its entry."""
    items = []
    for entry in candidates.load_set(path):
        row = candidates.registry_row(entry)
        if row is not None and row["name"] != entry.name:
            raise UsageError(f"{path}: {entry.source} is the registry's {row['name']!r}: name it so")
        items.append(entry if row is None else row)
    return items


def chosen_models(args: argparse.Namespace) -> dict:
    """Name -> candidates.Candidate of each base model to sweep: a registry model's published facts, any other's
    read from its config (a folder; a hub id from the local cache at --scale tiny, else from the hub)."""
    items = requested_entries(args)
    if args.scale == "full":
        check_hub_reachable([item.source for item in items
                             if isinstance(item, candidates.Entry) and not Path(item.source).is_dir()])
    return read_candidates(items, local_only=args.scale == "tiny", trust_remote_code=args.trust_remote_code)


def read_candidates(items: list, local_only: bool, trust_remote_code: bool) -> dict:
    """Name -> candidates.Candidate of registry rows and entries (`requested_entries`); two of one name refused."""
    chosen = {}
    for item in items:
        if isinstance(item, candidates.Entry):
            candidate = candidates.read(item, local_only=local_only, trust_remote_code=trust_remote_code)
        else:
            candidate = candidates.from_registry(item)
        if candidate.name in chosen:
            raise UsageError(f"two base models are named {candidate.name!r}; give one another name in a --model-set "
                             "file")
        chosen[candidate.name] = candidate
    return chosen


def check_batch_split(space: spaces.SearchSpace, workers: int, where: str) -> None:
    training = space.training
    if training.global_batch_size % (workers * training.micro_batch_size):
        raise UsageError(f"global batch {training.global_batch_size} is not a multiple of workers-per-trial "
                         f"({workers}) x micro-batch ({training.micro_batch_size}) in {where}")


def run_location(args: argparse.Namespace, name: str) -> tuple[storage.Location, storage.Location]:
    """(storage root, run directory), checked: reachable, writable, and free unless --overwrite or --resume."""
    try:
        root = storage.Location(args.storage)
        run_dir = root.child(name)
        exists = run_dir.exists()
        writable = root.writable()
    except (OSError, ValueError) as error:  # an unknown scheme, a bucket that cannot be reached
        first_line = str(error).splitlines()[0]  # pyarrow's can run to pages (hdfs lists every JVM it tried)
        raise UsageError(f"storage {args.storage}: {first_line}") from None
    if not writable:
        raise UsageError(f"storage {args.storage} is not writable")
    held = claim.read(run_dir) if exists else None
    if held is not None and not held.is_stale():
        raise UsageError(f"run directory {run_dir} is in use by a running sweep ({held.describe()}); watch it with "
                         f"python -m rmsweep.status --storage {args.storage} --name {name}")
    if args.resume and not run_dir.exists("sweep.json"):
        raise UsageError(f"nothing to resume: no sweep at {run_dir} (no sweep.json there)")
    if exists and not (args.overwrite or args.resume):
        raise UsageError(f"run directory {run_dir} already exists; pass --overwrite, --resume or another --name")
    return root, run_dir


def check_hub_reachable(sources: list[str]) -> None:
    """Real checkpoints from hub ids need the hub: fail at once when it cannot be reached."""
    from huggingface_hub import HfApi

    for source in sources:
        try:
            HfApi().model_info(source, timeout=10)
        except Exception as error:  # offline mode, DNS, refused, timeout, gated without a token
            raise UsageError(
                f"cannot reach the Hugging Face hub for {source} ({type(error).__name__}); use --scale tiny "
                "to run offline, or local checkpoint folders (--model-dir DIR, or folders in --models)") from None


def resolve(args: argparse.Namespace) -> Request:
    """The request, checked before anything is loaded or written."""
    check_flags(args)
    try:
        facts = chosen_models(args)
        space = spaces.load(args.family, args.rm_type, args.scale, args.search_spaces, args.space)
        data_spec = sources.check_spec(space.data, args.rm_type)
        grid_size = space.grid_size() if args.sampler == "grid" and space.grid() else None
    except (registry.RegistryError, candidates.CandidateError, spaces.SpaceError) as error:
        raise UsageError(str(error)) from None
    except sources.DataError as error:
        raise UsageError(f"{space.path}: {error}") from None
    if args.data_dir and data_spec == "builtin":
        raise UsageError(f"--data-dir has no effect with --scale tiny here: {space.path.name} trains tiny twins on "
                         "the built-in corpus; drop it, or use a space whose data names sources")
    samples = args.num_samples if args.num_samples is not None else grid_size or DEFAULT_TPE_SAMPLES
    if grid_size and samples > grid_size:
        raise UsageError(f"--num-samples {samples} exceeds the {grid_size} points of the grid in {space.path}")
    if args.workers_per_trial is not None:
        check_batch_split(space, args.workers_per_trial, str(space.path))
    if args.model_dir:
        missing = [name for name, fact in facts.items()
                   if fact.published and not (args.model_dir / name / "config.json").exists()]
        if missing:
            raise UsageError(f"no checkpoint at {args.model_dir / missing[0]} (expected config.json there)")
    label = args.family or (args.model_set.stem if args.model_set else "models")
    name = args.name or "-".join([label, args.rm_type, *([space.path.stem] if args.space else []), args.scale])
    root, run_dir = run_location(args, name)
    specs = {n: candidates.model_spec(fact, args.scale, args.model_dir, args.trust_remote_code)
             for n, fact in facts.items()}
    if args.scale == "full":
        check_hub_reachable([spec.source for n, spec in specs.items()
                             if facts[n].published and not Path(spec.source).is_dir()])
    # Each real model's layers and width, for the placement's activation estimate (a tiny twin's are negligible).
    shapes = {n: placement.model_shape(spec) for n, spec in specs.items()} if args.scale == "full" else {}
    # What the auto placement sizes: a tiny twin has well under a million parameters, whatever it stands for.
    params_b = {n: 0.0 if args.scale == "tiny" else fact.params_b for n, fact in facts.items()}
    return Request(name, specs, facts, params_b, shapes, space, data_spec, samples, root, run_dir)


def place(args: argparse.Namespace, request: Request) -> tuple[dict, int]:
    """Each model's worker group, checked against the cluster Ray is connected to, and the trials to run at once;
    the storage checked to be one every node sees."""
    import ray

    shapes, totals = placement.cluster_capacity()
    training = request.space.training
    placements = placement.plan(
        request.params_b, workers=args.workers_per_trial, cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker, strategy=args.strategy, gpu_memory_gb=args.gpu_memory_gb,
        cluster_has_gpus=totals.get("GPU", 0) > 0,
        gradient_checkpointing=None if args.gradient_checkpointing == "auto"
        else ON_OFF_AUTO[args.gradient_checkpointing],
        model_shapes={name: shape for name, shape in request.model_shapes.items() if shape},
        micro_batch_tokens=args.tokens_per_micro_batch or (training.micro_batch_size * training.max_length
                                                           * (1 if args.rm_type == "regression" else 2)),
    )
    problem = placement.unplaceable(placements, shapes, totals)
    if problem:
        raise UsageError(problem)
    for model, chosen in placements.items():
        check_batch_split(request.space, chosen.workers, f"{request.space.path} (for {model})")
        if args.attention == "flex_attention" and not chosen.gpus_per_worker:
            raise UsageError(f"--attention flex_attention trains on GPUs only (PyTorch has no backward pass for it "
                             f"on CPUs), and {model}'s trials would run on CPUs: drop it, or give workers GPUs")
    unshared = storage.unshared_nodes(request.root)
    if unshared:
        raise UsageError(
            f"storage {request.root} is not shared: {len(unshared)} of {len(ray.nodes())} nodes cannot read what "
            "this node writes there; pass --storage s3://..., gs://... or a folder every node mounts")
    return placements, concurrent_trials(args, request, placement.max_concurrent_trials(placements, totals))


def concurrent_trials(args: argparse.Namespace, request: Request, capacity: int) -> int:
    """Trials at once: --max-concurrent-trials (at most what the cluster holds), else the cluster's capacity shared
    evenly with the other rmsweep sweeps running on it (each keeps a named aggregator actor)."""
    if args.max_concurrent_trials:
        return min(args.max_concurrent_trials, capacity)
    import ray

    others = [actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
              if actor["name"].startswith(AGGREGATOR_PREFIX) and actor["name"] != AGGREGATOR_PREFIX + request.name]
    if others:
        log.info("sharing the cluster with %d other rmsweep sweep(s): %s", len(others),
                 ", ".join(name.removeprefix(AGGREGATOR_PREFIX) for name in others))
    return max(1, capacity // (len(others) + 1))


def budget_priors(names: list[str], rm_type: str, triage: dict | None = None) -> dict:
    """Each model's RewardBench score as the selector predicts it: the order in which a budget-aware sweep favours
    them. The triage's predictions where it ranked the models (the median for a pinned one it could not rank);
    else from the paper's published results."""
    if triage:
        predicted = {row["name"]: row["predicted"] for row in triage["ranking"]}
        median = statistics.median(predicted.values())
        return {name: predicted.get(name, median) for name in names}
    from rmsweep.analysis import selector

    return selector.predicted_quality(registry.models(), registry.nearest_published_columns(rm_type)["overall"],
                                      names)


def build_config(args: argparse.Namespace, request: Request, data: sources.Data, placements: dict,
                 concurrency: int, triage: dict | None = None) -> SweepConfig:
    """The sweep's one configuration, from the request, the loaded data, the placement and the triage's record."""
    return SweepConfig(
        name=request.name, run_dir=request.run_dir.uri, family=args.family, models=request.models,
        facts=request.facts,
        params_b=request.params_b, space=request.space, placements=placements, max_concurrent_trials=concurrency,
        rm_type=args.rm_type, bt_variant=args.bt_loss, reward_centering=args.reward_centering,
        regression_weights=args.regression_weights,
        # Validation during training needs a fixed vector; a searched one is found after, per model.
        validation_weights=tuple(scoring.PUBLISHED_WEIGHTS.get(args.regression_weights,
                                                               scoring.PUBLISHED_WEIGHTS["nemotron-4-340b"])),
        scale=args.scale, seed=args.seed, data_seed=data_seed(args), sampler=args.sampler,
        samples_per_model=request.samples_per_model, budget_steps=args.budget, transfer=args.transfer,
        priors=budget_priors(list(request.models), args.rm_type, triage) if args.budget else None, triage=triage,
        benchmarks=(("rewardbench", "rewardbench2") if request.data_spec == "builtin"
                    else tuple(entry["source"] for entry in request.data_spec["eval"])),
        keep_checkpoints=args.keep_checkpoints, max_failures=args.max_failures,
        attention=args.attention, padding_free=ON_OFF_AUTO[args.padding_free],
        gradient_checkpointing=ON_OFF_AUTO[args.gradient_checkpointing],
        shared_prompt=ON_OFF_AUTO[args.shared_prompt], tokens_per_micro_batch=args.tokens_per_micro_batch,
        precision=args.precision, compile=args.compile, liger=args.liger,
        # Beside the runs, not in one: later sweeps on the same data and tokenizer reuse it.
        token_cache=request.root.child("token_cache").uri, train_examples=len(data.train),
        data_fingerprints=(("train", token_cache.fingerprint(data.train)),
                           ("validation", token_cache.fingerprint(data.validation))),
        data_accounts=tuple(data.accounts),
        model_shapes={name: shape for name, shape in request.model_shapes.items() if shape},
    )


def data_seed(args: argparse.Namespace) -> int:
    return args.seed if args.data_seed is None else args.data_seed
