"""Summarise a sweep, running or finished: python -m rmsweep.status --storage DIR|URI --name NAME

Reads what the sweep keeps up to date in its run directory (sweep.json, and trials.csv, which the aggregator
rewrites at every evaluation of every trial), so it works from any machine that can read the storage, while
the sweep runs or after. Prints the trials per status, the running ones, the best trial per base model and the
compute used so far (GPU-hours, and worker-hours for CPU sweeps). --watch N reprints every N seconds until
the sweep finishes.
"""
import argparse
import json
import sys
import time

import pandas as pd

from rmsweep.sweep import ledger, storage

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
    return json.loads(run_dir.read_text("sweep.json")), ledger.read(run_dir)


def compute_line(trials: pd.DataFrame) -> str:
    gpu_hours = ledger.gpu_hours(trials)
    if gpu_hours > 0 or "workers" not in trials:
        return f"compute so far: {gpu_hours:.2f} GPU-hours"
    return f"compute so far: 0 GPU-hours ({ledger.worker_hours(trials):.2f} CPU worker-hours)"


def summary(sweep: dict, trials: pd.DataFrame, run_dir: storage.Location) -> str:
    finished = "finished" in sweep
    expected = ledger.expected_trials(sweep)
    counts = ledger.counts(trials, expected, finished)
    elapsed = sweep["wall_seconds"] if "wall_seconds" in sweep else time.time() - sweep["started_unix"]
    done = len(trials) - counts.get("running", 0)
    of = (f"of {expected}" if expected is not None
          else f"(a budget of {sweep['budget_steps']:,} trial-steps decides how many; "
               f"{int(trials['steps'].sum()) if len(trials) else 0:,} spent)")
    state = ("finished" if finished else "interrupted (python -m rmsweep.run ... --resume continues it)"
             if "interrupted" in sweep else "running")
    lines = [
        f"{sweep['name']}: {state}, {elapsed / 60:.1f} min since {sweep['started']} "
        f"({sweep['family'] or 'models'}, {sweep['rm_type']} RMs, scale {sweep['scale']})",
        f"trials: {done} {of} finished; " + ", ".join(f"{n} {status}" for status, n in counts.items() if n),
        compute_line(trials),
    ]
    running = trials[trials["status"] == "running"]
    if not running.empty:
        lines += ["", "running (as of each trial's latest evaluation):",
                  running[[c for c in RUNNING_COLUMNS if c in running]].to_string(index=False)]
    best = ledger.best_per_model(trials)
    if not best.empty:
        lines += ["", "best trial per base model so far:",
                  best[["model", "lr", "epochs", "best_val_accuracy", "status"]]
                  .sort_values("best_val_accuracy", ascending=False).to_string(index=False)]
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
        while args.watch and not {"finished", "interrupted"} & set(sweep):
            time.sleep(args.watch)
            sweep, trials = read_run(run_dir)
            print(f"\n--- {time.strftime('%H:%M:%S')}\n{summary(sweep, trials, run_dir)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
