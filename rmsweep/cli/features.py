"""Measure the selector's cheap features: python -m rmsweep.features --model-set FILE (or --models, --family)

One Ray task per (model, benchmark), with the GPU it needs, so a cluster measures many candidates at once. Values
are cached under <storage>/features/ (a rerun, or one after a crash, measures only what is missing) and gathered
in <storage>/features/features.csv. The benchmarks, their settings, and how the selector uses measured values:
docs/candidates.md.
"""
import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from rmsweep.cli.common import OneLineParser, setup_logging
from rmsweep.data import candidates, registry
from rmsweep.features import benchmarks, cache
from rmsweep.features.measure import FeatureModel
from rmsweep.sweep import plan, session, storage
from rmsweep.sweep.plan import UsageError

log = logging.getLogger("rmsweep.features")


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m rmsweep.features", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", metavar="KEY", help="a registry family, or 'all': the registry's models "
                        "(re-measured so the selector can be refitted on features measured one way)")
    parser.add_argument("--models", nargs="+", metavar="MODEL",
                        help="registry names, hub ids (org/name[@revision]) and local checkpoint folders, mixed")
    parser.add_argument("--model-set", metavar="FILE", type=Path, help="a model-set YAML file (docs/candidates.md)")
    parser.add_argument("--tasks", nargs="+", metavar="NAME", default=list(benchmarks.BENCHMARKS),
                        help=f"benchmarks to measure (default: all: {', '.join(benchmarks.BENCHMARKS)})")
    parser.add_argument("--data-dir", metavar="DIR", type=Path,
                        help="read each benchmark from DIR/<name>.jsonl (or .json, .parquet, .csv), a local copy in "
                        "the hub schema, instead of the hub")
    parser.add_argument("--model-dir", metavar="DIR", type=Path,
                        help="read registry models from DIR/<model name> instead of the hub")
    parser.add_argument("--limit", metavar="N", type=int,
                        help="only the first N items of each benchmark: a rehearsal, its values never used by the "
                        "selector")
    parser.add_argument("--max-new-tokens", metavar="N", type=int,
                        help="cap generation at N tokens: a rehearsal, its values never used by the selector")
    parser.add_argument("--gpus-per-task", metavar="N", type=float,
                        help="GPUs per (model, benchmark) task (default: 1 where the cluster has GPUs, else 0)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let a model's repository run its own modeling code (off by default)")
    parser.add_argument("--storage", metavar="DIR|URI", default="rmsweep_runs",
                        help="where features/ is kept, as for python -m rmsweep.run (default: ./rmsweep_runs)")
    parser.add_argument("--verbose", action="store_true", help="also show lm-eval's and Ray's own output")
    return parser.parse_args(argv)


def feature_models(args: argparse.Namespace) -> list[FeatureModel]:
    """The models named, as checkpoints to measure (registry models by hub id or under --model-dir)."""
    if args.family == "all":
        items = [row for _, row in registry.models().iterrows()]
    else:
        items = plan.requested_entries(args)
    facts = plan.read_candidates(items, local_only=False, trust_remote_code=args.trust_remote_code)
    return [FeatureModel.of(name, candidates.model_spec(fact, "full", args.model_dir, args.trust_remote_code))
            for name, fact in facts.items()]


def check(args: argparse.Namespace) -> None:
    if not (args.family or args.models or args.model_set):
        raise UsageError("name the models: --family KEY|all, --models MODEL ... or --model-set FILE")
    if args.model_set and (args.family or args.models):
        raise UsageError("--model-set names the models itself: drop --family and --models")
    for flag, number in (("--limit", args.limit), ("--max-new-tokens", args.max_new_tokens)):
        if number is not None and number <= 0:
            raise UsageError(f"{flag} must be positive, got {number}")
    if args.data_dir and not args.data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a folder")


def jobs_of(args: argparse.Namespace) -> list:
    """Every (model, benchmark) job, checked before anything runs."""
    from rmsweep.features.jobs import Job

    check(args)
    try:
        chosen = [benchmarks.benchmark(name) for name in args.tasks]
        local = {bench.name: benchmarks.local_copy(bench, args.data_dir) for bench in chosen}
        models = feature_models(args)
    except (benchmarks.FeatureError, candidates.CandidateError, registry.RegistryError) as error:
        raise UsageError(str(error)) from None
    return [Job(model, bench, local[bench.name], args.limit, args.max_new_tokens) for model in models
            for bench in chosen]


def summary(records: list[dict]) -> pd.DataFrame:
    """Model x benchmark, a rehearsal value marked with '*'."""
    table = pd.DataFrame(records)
    shown = table.assign(shown=[f"{v:.1f}{'*' if r else ''}" for v, r in zip(table["value"], table["rehearsal"])])
    return shown.pivot(index="model", columns="benchmark", values="shown")


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    session.use_token_authentication()
    try:
        jobs = jobs_of(args)
        root = storage.Location(args.storage)
        if not root.writable():
            raise UsageError(f"storage {args.storage} is not writable")
    except (OSError, ValueError) as error:  # an unknown scheme, a bucket that cannot be reached
        print(f"rmsweep.features: error: storage {args.storage}: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    except UsageError as error:
        print(f"rmsweep.features: error: {error}", file=sys.stderr)
        return 2
    from rmsweep.features import jobs as feature_jobs

    records = feature_jobs.run(jobs, root, args.gpus_per_task)
    everything = cache.records(root)
    root.child(cache.FOLDER).write_text("features.csv", everything.to_csv(index=False))
    print(summary(records).to_string())
    if any(record["rehearsal"] for record in records):
        print("* rehearsal value (--limit or --max-new-tokens): cached and shown, never used by the selector")
    print(f"all measurements: {root.child(cache.FOLDER).uri}/features.csv")
    return 0
