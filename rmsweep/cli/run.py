"""Sweep base models: python -m rmsweep.run --family gemma2 --scale tiny (or --models NAME ...)

Validates everything before any compute (flags, search space, every data row; --dry-run stops there and prints
the plan), claims the run directory, runs one Ray Tune sweep
(an Optuna study per base model, TPE or a grid; ASHA per base model; one Ray Train TorchTrainer per trial),
scores each model's best checkpoint on the benchmarks, and leaves in <storage>/<name>/: trials.csv,
best_per_model.csv, selector.json, report.md (+ plots), scores/ (per-completion scores) and sweep.json.

Search spaces (--space NAME, in search_spaces/, or --space FILE.yaml): default (a log-uniform lr range),
paper-bt and paper-regression (the grids of arXiv 2505.10775), rewardbench2 (the grid and Tulu 3 + Skywork mix
of RewardBench 2). Each names its data; --scale tiny swaps in the built-in corpus. Ctrl-C stops the sweep at
its trials' next evaluations; --resume continues it.
"""
import json
import logging
import platform
import shlex
import sys
import time
from importlib.metadata import version

from rmsweep.cli.common import setup_logging
from rmsweep.cli.run_args import parse_args
from rmsweep.config import RESUME_FIELDS, SweepConfig
from rmsweep.data import registry, sources
from rmsweep.sweep import claim, interrupt, ledger, plan, storage
from rmsweep.sweep.plan import UsageError
from rmsweep.sweep.session import start_ray, use_token_authentication

log = logging.getLogger("rmsweep.run")
INTERRUPTED = 130  # the exit status of a program stopped by Ctrl-C
OUTPUTS = ("trials.csv", "curves.parquet", "best_per_model.csv", "selector.json", "report.md", "scores/", "sweep.json")


def print_families() -> None:
    columns = ["family_key", "name", "params_b", "size_group", "stage", "hf_id"]
    table = registry.models()[columns].sort_values(["family_key", "params_b"], ascending=[True, False])
    print(table.rename(columns={"family_key": "family", "params_b": "params (B)"}).to_string(index=False))


def hf_token_record() -> str | None:
    """What sweep.json says of the Hugging Face token: whether one is set (HF_TOKEN or the token file that
    `hf auth login` writes, read by transformers on each node), never the token."""
    from huggingface_hub import get_token

    return "<redacted>" if get_token() else None


def versions() -> dict:
    packages = ("ray", "torch", "transformers", "datasets", "optuna", "scikit-learn", "pandas")
    return {"python": platform.python_version(), **{p: version(p) for p in packages}}


def describe(sweep: SweepConfig, resume: bool) -> list[str]:
    """The plan, as --dry-run prints it and a run logs it before the first trial."""
    space = sweep.space
    how = (f"within {sweep.budget_steps:,} trial-steps (successive halving over models)" if sweep.budget_steps
           else f"{sweep.samples_per_model} trials per model ({'the grid' if sweep.sampler == 'grid' else 'TPE'})")
    lines = [f"plan: {len(sweep.models)} base model(s), {how}, {sweep.max_concurrent_trials} at a time",
             f"  search space {space.path}: lr {list(space.lr)}{' (log-uniform range)' if space.lr_is_range else ''}"
             f", epochs {list(space.epochs)}, ASHA grace {space.asha['grace_period']} evaluations",
             f"  data: {sweep.train_examples} training rows; benchmarks {', '.join(sweep.benchmarks)}",
             *[f"  {account}" for account in sweep.data_accounts]]
    for model, chosen in sweep.placements.items():
        fact = sweep.facts[model]
        read = "" if fact.published else (
            f" ({fact.architecture}, {fact.params_b:.3g}B, read from {fact.entry.source}"
            + ("" if fact.has_chat_template else "; no chat template: plain format") + ")")
        lines.append(f"  {model}{read}: {chosen.workers} worker(s) x {chosen.cpus_per_worker:g} CPU "
                     f"{chosen.gpus_per_worker:g} GPU, {chosen.strategy}"
                     + (", gradient checkpointing" if chosen.gradient_checkpointing else ""))
    lines.append(f"  run directory: {sweep.run_dir}{' (resumed)' if resume else ''}")
    return lines


def open_run(sweep: SweepConfig, resume: bool, overwrite: bool) -> tuple[dict, list[dict], claim.Heartbeat]:
    """(sweep.json's record, the ledger to continue, the claim's heartbeat): a new run directory, or the
    interrupted one's, claimed for this sweep before anything else is written there."""
    run_dir = storage.Location(sweep.run_dir)
    current = json.loads(json.dumps(sweep.record(), default=str))
    if resume:
        record = json.loads(run_dir.read_text("sweep.json"))
        try:
            rows = ledger.resumable_rows(run_dir, record, current, RESUME_FIELDS)
        except ValueError as error:
            raise UsageError(str(error)) from None
    elif overwrite:
        run_dir.remove()  # checked before: no live sweep holds it
    run_dir.make()
    try:
        taken = claim.take(run_dir, resume)
    except claim.Claimed as error:
        raise UsageError(str(error)) from None
    heartbeat = claim.Heartbeat(run_dir, taken)
    if resume:
        record.pop("finished", None)
        record.pop("interrupted", None)
        record.pop("wall_seconds", None)
        record["resumed"] = [*record.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S")]
        log.info("resuming %s: %d trials finished, %d to continue", run_dir,
                 sum(row["status"] not in ledger.CONTINUED for row in rows),
                 sum(row["status"] in ledger.CONTINUED for row in rows))
        return record, rows, heartbeat
    return {**current, "versions": versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "started_unix": round(time.time(), 1), "hf_token": hf_token_record()}, [], heartbeat


def resume_command(argv: list[str]) -> str:
    """The exact command that continues this sweep."""
    kept = [arg for arg in argv if arg not in ("--overwrite", "--resume")]
    return shlex.join(["python", "-m", "rmsweep.run", *kept, "--resume"])


def launch(sweep: SweepConfig, data: sources.Data, record: dict, rows: list[dict], argv: list[str]):
    """The sweep, then the scoring of each model's best checkpoint: the results table, or None when Ctrl-C
    interrupted it (the ledger and a report marked interrupted are written then)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from rmsweep.sweep import aggregate, tuner

    run_dir = storage.Location(sweep.run_dir)
    run_dir.write_text("sweep.json", json.dumps(record, indent=2, default=str))
    # Put in the object store once; every trial's workers and the scoring tasks read them from there.
    training_data = ray.put({"train": data.train, "validation": data.validation})
    evaluation_data = ray.put({"benchmarks": data.eval, "validation": data.validation})
    # On the driver's node (a cluster's head, never preemptible): the ledger must outlive any worker node.
    driver_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    aggregator = aggregate.Aggregator.options(name=aggregate.actor_name(sweep.name),
                                              scheduling_strategy=driver_node).remote(
        sweep, [evaluation_data], [row for row in rows if row["status"] not in ledger.CONTINUED])
    try:
        with interrupt.Handler():
            try:
                tuner.run_sweep(sweep, aggregator, training_data, rows)
            except KeyboardInterrupt:  # the second Ctrl-C
                interrupt.request()
        if interrupt.requested():
            command = resume_command(argv)
            headline = ray.get(aggregator.write_interrupted.remote(command))
            record["interrupted"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            best = None
            log.info("%s; the ledger and report.md are in %s. Continue with:\n  %s", headline, sweep.run_dir,
                     command)
        else:
            log.info("scoring each base model's best checkpoint and fitting the selector ...")
            best = ray.get(aggregator.finalize.remote())
            record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    finally:
        ray.kill(aggregator)  # frees its name for the next sweep of this name on a long-lived cluster
    record["wall_seconds"] = round(time.time() - record["started_unix"], 1)
    run_dir.write_text("sweep.json", json.dumps(record, indent=2, default=str))
    return best


def prepare(args) -> tuple[SweepConfig, sources.Data]:
    """Everything checked and the one SweepConfig built, before anything is written; raises UsageError."""
    request = plan.resolve(args)
    log.info("loading and checking the data ...")
    try:
        data = sources.load(request.space.data, args.rm_type, args.data_dir, plan.data_seed(args))
    except sources.DataError as error:
        raise UsageError(str(error)) from None
    start_ray(args.verbose)
    ranked = None
    if args.triage:
        request, ranked = apply_triage(args, request)
    placements, concurrency = plan.place(args, request)
    return plan.build_config(args, request, data, placements, concurrency, ranked), data


def apply_triage(args, request: plan.Request) -> tuple[plan.Request, dict]:
    """The request narrowed to the top --triage K candidates and the pinned ones, and the triage's record; the
    features they lack measured first (not in a --dry-run: those candidates are listed as unranked)."""
    from rmsweep.features.benchmarks import FeatureError
    from rmsweep.sweep import triage  # the selector's imports (scikit-learn, SciPy): only when ranking

    try:
        if not args.dry_run:
            triage.measure_lacking(request.facts, args.rm_type, request.root, args.features_data_dir,
                                   args.trust_remote_code)
        ranking = triage.rank(request.facts, args.rm_type, request.root, seed=args.seed)
        chosen = triage.choose(ranking, args.triage, args.pin, list(request.facts))
    except (FeatureError, triage.TriageError) as error:
        raise UsageError(str(error)) from None
    ranked = triage.record(ranking, chosen, args.pin)
    for row in ranked["ranking"]:
        log.info("  triage: %-28s predicted %.1f (%.1f-%.1f)%s", row["name"], row["predicted"], row["low"],
                 row["high"], "  swept" if row["name"] in chosen else "")
    for row in ranked["unranked"]:
        log.info("  triage: %s cannot be ranked: no %s", row["name"], ", ".join(row["missing"]))
    return triage.narrowed(request, chosen), ranked


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    use_token_authentication()
    if args.list_families:
        print_families()
        return 0
    try:
        sweep, data = prepare(args)
        for line in describe(sweep, args.resume):
            log.info(line)
        if args.dry_run:
            log.info("dry run: nothing trained, nothing written")
            return 0
        record, rows, heartbeat = open_run(sweep, args.resume, args.overwrite)
    except UsageError as error:
        print(f"rmsweep.run: error: {error}", file=sys.stderr)
        return 2
    try:
        best = launch(sweep, data, record, rows, sys.argv[1:] if argv is None else list(argv))
    finally:
        heartbeat.release()
    if best is None:
        return INTERRUPTED
    import pandas as pd

    from rmsweep.analysis import report

    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(best[report.best_columns(best)].to_string(index=False))
    print(f"\nresults in {sweep.run_dir}: {', '.join(OUTPUTS)} ({record['wall_seconds'] / 60:.1f} min)")
    return 0
