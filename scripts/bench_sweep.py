"""Sweep efficiency: ASHA + TPE and the budget-aware mode against the paper's full grid, one run, same
machine, same base models, same grid points, same data (tiny presets, where the full grid is affordable).

    python scripts/bench_sweep.py                      # about 15 minutes on 2 cores
    python scripts/bench_sweep.py --family gemma2 --budget-share 0.2
    python scripts/bench_sweep.py --seed 1 --grace-period 2   # another draw; ASHA waits 2 evaluations

The grid is `paper-bt`'s (10 learning rates x 1 epoch per base model), every point trained to the end (ASHA
off). ASHA + TPE samples the same points (`--num-samples` per model, ASHA per model); the budget-aware mode
gets `--budget-share` of the grid's trial-steps. For each: the trial-steps it spent, the trial-steps spent
(in the order trials finished) until its best validation accuracy came within 0.5 points of the grid's best,
and whether it picked the grid's best base model (the model with the highest validation accuracy; any of
them when several tie).
"""
import argparse
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from rmsweep import run, spaces

TOLERANCE = 0.005  # 0.5 points of validation accuracy


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="qwen2.5", help="a family with several base models (default: qwen2.5)")
    parser.add_argument("--num-samples", type=int, default=3, help="ASHA + TPE trials per model (default: 3)")
    parser.add_argument("--budget-share", type=float, default=0.3,
                        help="the budget-aware mode's budget, as a share of the grid's trial-steps (default: 0.3)")
    parser.add_argument("--grace-period", type=int, metavar="EVALS",
                        help="ASHA's grace period for the two searched modes, in evaluations (default: paper-bt's, 1 "
                             "for tiny)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the sweeps' seed: samplers, model init, data order and the built-in corpus (default: 0)")
    parser.add_argument("--keep", metavar="DIR", help="keep the three run directories in DIR")
    return parser.parse_args(argv)


def paper_bt_with_grace_period(directory: Path, name: str, grace_period: int) -> str:
    """A copy of `paper-bt` (beside the built-in spaces, in `directory`) whose tiny ASHA waits `grace_period`
    evaluations before stopping a trial; past every trial's end, it is the full grid run to the end."""
    space = yaml.safe_load((spaces.DEFAULT_DIR / "paper-bt.yaml").read_text())
    space["by_scale"]["tiny"]["asha"] = {"grace_period": grace_period}
    for path in spaces.DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(path, directory)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(space))
    return name


def summarize(trials: pd.DataFrame, target: float, best_models: set) -> dict:
    """Figures of one sweep from its ledger (rows in the order trials finished)."""
    running_best = trials["best_val_accuracy"].cummax()
    reached = running_best >= target - TOLERANCE
    per_model = trials.groupby("model")["best_val_accuracy"].max()
    picked = per_model.idxmax()
    return {
        "trials": len(trials), "trial_steps": int(trials["steps"].sum()),
        "best_val_accuracy": float(per_model.max()),
        "steps_to_reach": int(trials["steps"].cumsum()[reached].iloc[0]) if reached.any() else None,
        "picked_model": picked, "same_best_model": picked in best_models,
    }


def main(argv=None):
    args = parse_args(argv)
    import ray

    ray.init(num_cpus=2, log_to_driver=False)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(args.keep or scratch)
        space_dir = scratch / "spaces"
        space_dir.mkdir(parents=True, exist_ok=True)
        full_grid = paper_bt_with_grace_period(space_dir, "paper-bt-full-grid", 10_000)
        searched = (paper_bt_with_grace_period(space_dir, "paper-bt-grace", args.grace_period) if args.grace_period
                    else "paper-bt")
        common = ["--family", args.family, "--scale", "tiny", "--storage", str(scratch), "--search-spaces",
                  str(space_dir), "--seed", str(args.seed), "--overwrite"]
        ledgers = {}

        def sweep(mode: str, *flags: str) -> pd.DataFrame:
            print(f"\n=== {mode} ===", flush=True)
            status = run.main([*common, "--name", mode, *flags])
            if status:
                raise SystemExit(f"the {mode} sweep failed (exit {status})")
            ledgers[mode] = pd.read_csv(scratch / mode / "trials.csv")
            return ledgers[mode]

        grid = sweep("grid", "--space", full_grid, "--sampler", "grid")
        grid_steps = int(grid["steps"].sum())
        sweep("asha-tpe", "--space", searched, "--sampler", "tpe", "--num-samples", str(args.num_samples))
        sweep("budget", "--space", searched, "--sampler", "tpe", "--budget", str(int(args.budget_share * grid_steps)))
    ray.shutdown()

    per_model = grid.groupby("model")["best_val_accuracy"].max()
    target = float(per_model.max())
    best_models = set(per_model[per_model == target].index)
    table = pd.DataFrame({mode: summarize(trials, target, best_models) for mode, trials in ledgers.items()}).T
    table["share_of_grid_steps"] = table["trial_steps"] / grid_steps
    table["steps_to_reach_share"] = table["steps_to_reach"].map(lambda s: None if s is None else s / grid_steps)
    print(f"\nthe grid's best validation accuracy: {target:.4f} ({', '.join(sorted(best_models))}); "
          f"reached = within {TOLERANCE * 100:.1f} points\n")
    print(table.to_string(float_format=lambda x: f"{x:.3f}"))
    headline = {"grid_trial_steps": grid_steps}
    for mode in ("asha-tpe", "budget"):
        row = table.loc[mode]
        key = mode.replace("-", "_")
        headline[f"{key}_step_share"] = f"{row['share_of_grid_steps']:.3f}"
        headline[f"{key}_steps_to_reach_share"] = ("none" if row["steps_to_reach"] is None
                                                   else f"{row['steps_to_reach_share']:.3f}")
        headline[f"{key}_same_best_model"] = int(row["same_best_model"])
        headline[f"{key}_val_gap_points"] = f"{(target - row['best_val_accuracy']) * 100:.2f}"
    print("RESULT " + " ".join(f"{key}={value}" for key, value in headline.items()))


if __name__ == "__main__":
    main()
