"""Summarise a sweep, running or finished: python -m rmsweep.status --storage DIR|URI --name NAME

Reads what the sweep keeps up to date in its run directory (sweep.json, and trials.csv, which the aggregator
rewrites at every evaluation of every trial), so it works from any machine that can read the storage, while
the sweep runs or after. Prints the trials per status, the running ones, the best trial per base model and the
compute used so far (GPU-hours, and worker-hours for CPU sweeps). --watch N reprints every N seconds until
the sweep finishes.
"""
import argparse
import io
import json
import sys
import time

import pandas as pd

from rmsweep.sweep import storage

RUNNING_COLUMNS = ["trial_id", "model", "lr", "epochs", "steps", "total_steps", "best_val_accuracy",
                   "tokens_per_second", "nodes", "wall_seconds"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rmsweep.status", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", metavar="DIR|URI", default="rmsweep_runs",
                        help="the sweep's --storage (default: ./rmsweep_runs)")
    parser.add_argument("--name", required=True, help="the sweep's run name, e.g. gemma2-bt-tiny")
    parser.add_argument("--watch", metavar="SECONDS", type=float,
                        help="reprint every SECONDS until the sweep finishes (default: print once)")
    return parser.parse_args(argv)


def read_run(run_dir: storage.Location) -> tuple[dict, pd.DataFrame]:
    """(sweep.json, the trials ledger: empty before the first trial starts)."""
    sweep = json.loads(run_dir.read_text("sweep.json"))
    if not run_dir.exists("trials.csv"):
        return sweep, pd.DataFrame(columns=["status", "model", "wall_seconds", "gpus", "best_val_accuracy"])
    return sweep, pd.read_csv(io.StringIO(run_dir.read_text("trials.csv")))


def summary(sweep: dict, trials: pd.DataFrame, run_dir: storage.Location) -> str:
    total = len(sweep["model_specs"]) * sweep["samples_per_model"]
    finished = "finished" in sweep
    elapsed = sweep["wall_seconds"] if finished else time.time() - sweep["started_unix"]
    counts = trials["status"].value_counts().to_dict()
    counts["pending"] = total - len(trials)
    state = "finished" if finished else "running"
    lines = [
        f"{sweep['name']}: {state}, {elapsed / 60:.1f} min since {sweep['started']} "
        f"({sweep['family']}, {sweep['rm_type']} RMs, scale {sweep['scale']})",
        f"trials: {len(trials) - counts.get('running', 0)} of {total} finished; "
        + ", ".join(f"{n} {status}" for status, n in counts.items() if n),
    ]
    worker_hours = (trials["wall_seconds"] * trials["gpus"]).sum() / 3600
    if trials["gpus"].sum() > 0:
        lines.append(f"compute so far: {worker_hours:.2f} GPU-hours")
    else:
        workers = {model: placed["workers"] for model, placed in sweep["placements"].items()}
        cpu_hours = (trials["wall_seconds"] * trials["model"].map(workers)).sum() / 3600
        lines.append(f"compute so far: 0 GPU-hours ({cpu_hours:.2f} CPU worker-hours)")
    running = trials[trials["status"] == "running"]
    if not running.empty:
        lines += ["", "running (as of each trial's latest evaluation):",
                  running[[c for c in RUNNING_COLUMNS if c in running]].to_string(index=False)]
    scored = trials.dropna(subset=["best_val_accuracy"])
    if not scored.empty:
        best = scored.loc[scored.groupby("model")["best_val_accuracy"].idxmax(), ["model", "lr", "epochs",
                                                                                   "best_val_accuracy", "status"]]
        lines += ["", "best trial per base model so far:",
                  best.sort_values("best_val_accuracy", ascending=False).to_string(index=False)]
    if finished:
        lines += ["", f"results in {run_dir}: best_per_model.csv, report.md"]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run_dir = storage.Location(args.storage).child(args.name)
        if not run_dir.exists("sweep.json"):
            raise FileNotFoundError(f"no sweep at {run_dir} (no sweep.json there); check --storage and --name")
        sweep, trials = read_run(run_dir)
    except (OSError, ValueError) as error:
        print(f"rmsweep.status: error: {error}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(summary(sweep, trials, run_dir), flush=True)
        while args.watch and "finished" not in sweep:
            time.sleep(args.watch)
            sweep, trials = read_run(run_dir)
            print(f"\n--- {time.strftime('%H:%M:%S')}\n{summary(sweep, trials, run_dir)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
