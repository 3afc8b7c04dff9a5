"""Run search strategies on a simulated sweep of the registry's models: python -m rmsweep.simulate

Each strategy runs the shipped sweep (per-model searcher, allocation and ASHA) once per seed on response surfaces
built from published results (docs/simulator.md), or on a recorded sweep's curves (--replay), with trials that
report curves instead of training. Prints, per strategy, the regret of what the sweep recommends (the true best
checkpoint's score less the true score of the recommended one, RewardBench points; mean, median and quartiles
over seeds), how often it picked each size group's true best model, and the trial-steps it spent as a share of the
full grid's; with --sensitivity, the same under changed assumptions. Writes the tables and a regret-vs-cost plot
to --out and ends with a RESULT line.
"""
import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from rmsweep.cli.common import OneLineParser, setup_logging
from rmsweep.simulate import plot, replay
from rmsweep.simulate import sweep as simulated
from rmsweep.simulate.surface import SimulationSettings
from rmsweep.sweep import spaces

log = logging.getLogger("rmsweep")
TARGET = {"regret_mean": 0.5, "min_group_picked": 0.9, "share_of_grid_steps": 0.3}  # issue 20's bar


def parse_args(argv=None):
    parser = OneLineParser(prog="python -m rmsweep.simulate", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", choices=list(simulated.STRATEGIES),
                        default=list(simulated.STRATEGIES), help="default: all")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per strategy (default: 3)")
    parser.add_argument("--models", nargs="+", help="registry names (default: every model with a published score)")
    parser.add_argument("--rm-type", choices=("bt", "regression"), default="bt")
    parser.add_argument("--noise-scale", type=float, default=1.0, help="multiplies both noise terms (default: 1)")
    parser.add_argument("--sensitivity", action="store_true",
                        help="also run every strategy with the noise doubled, the lr* spread doubled, and the "
                        "lr*-vs-size exponent at 0 and doubled")
    parser.add_argument("--replay", metavar="RUN_DIR",
                        help="run the strategies on a recorded sweep's curves instead of the surfaces (a full grid "
                        "run to its end: --sampler grid, no early stopping)")
    parser.add_argument("--engine", choices=simulated.ENGINES, default="in-process",
                        help="in-process: the searcher and scheduler driven directly (fast); tune: inside Ray "
                        "Tune with the ledger and aggregator (much slower: docs/simulator.md)")
    parser.add_argument("--concurrency", type=int, default=8, help="simulated trials at once (default: 8)")
    parser.add_argument("--out", default="simulation", help="folder for results.csv, summary.csv, "
                        "sensitivity.csv and regret_vs_cost.png (default: ./simulation)")
    args = parser.parse_args(argv)
    if args.replay and (args.sensitivity or args.models or args.noise_scale != 1.0):
        parser.error("--replay takes its models and noise from the recording: drop --sensitivity, --models and "
                     "--noise-scale")
    if args.seeds < 1 or args.concurrency < 1:
        parser.error("--seeds and --concurrency must be at least 1")
    return args


def settings_to_run(args) -> dict[str, SimulationSettings]:
    base = SimulationSettings(noise_scale=args.noise_scale)
    if not args.sensitivity:
        return {"default": base}
    return {"default": base, "noise x2": replace(base, noise_scale=2 * base.noise_scale),
            "lr* spread x2": replace(base, lr_spread_decades=2 * base.lr_spread_decades),
            "size exponent 0": replace(base, size_exponent=0.0),
            "size exponent x2": replace(base, size_exponent=2 * base.size_exponent)}


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, strategy): regret over seeds, the share of the grid's trial-steps, and the share of seeds
    that picked each size group's true best model."""
    groups = sorted(column.removeprefix("picked_best_") for column in results if column.startswith("picked_best_"))
    summary = results.groupby(["setting", "strategy"], sort=False).agg(
        regret_mean=("regret_all", "mean"), regret_median=("regret_all", "median"),
        regret_q1=("regret_all", lambda x: x.quantile(0.25)), regret_q3=("regret_all", lambda x: x.quantile(0.75)),
        share_of_grid_steps=("share_of_grid_steps", "mean"),
        **{f"picked_{group}": (f"picked_best_{group}", "mean") for group in groups})
    summary["min_group_picked"] = summary[[f"picked_{group}" for group in groups]].min(axis=1)
    summary["meets_target"] = ((summary["regret_mean"] <= TARGET["regret_mean"])
                               & (summary["min_group_picked"] >= TARGET["min_group_picked"])
                               & (summary["share_of_grid_steps"] <= TARGET["share_of_grid_steps"]))
    return summary


def run_all(args, storage: str) -> pd.DataFrame:
    rows, recording = [], replay.Replay(args.replay) if args.replay else None
    for setting, settings in settings_to_run(args).items():
        started = time.time()
        for seed in range(args.seeds):
            problem = recording or simulated.simulated_problem(args.rm_type, space_for(args.rm_type), settings, seed,
                                                               args.models)
            grid_steps = simulated.grid_trial_steps(problem)
            for name in args.strategies:
                figures = simulated.run(problem, simulated.STRATEGIES[name], f"{storage}/{setting}-{name}-{seed}",
                                        seed, args.concurrency, args.engine)
                rows.append({"setting": setting, "strategy": name, "seed": seed,
                             "share_of_grid_steps": figures["trial_steps"] / grid_steps, **figures})
            log.info("%s: seed %d of %d done (%.0f s)", setting, seed + 1, args.seeds, time.time() - started)
    return pd.DataFrame(rows)


def space_for(rm_type: str) -> spaces.SearchSpace:
    return spaces.load(None, rm_type, "full", name="paper-bt" if rm_type == "bt" else "paper-regression")


def result_line(summary: pd.DataFrame) -> str:
    default = summary.loc["default"]
    cheap = default[default["share_of_grid_steps"] <= TARGET["share_of_grid_steps"]]
    best_name = cheap["regret_mean"].idxmin() if len(cheap) else default["regret_mean"].idxmin()
    best = default.loc[best_name]
    fields = {"best": best_name, "best_regret_mean": f"{best.regret_mean:.3f}",
              "best_min_group_picked": f"{best.min_group_picked:.2f}",
              "best_share_of_grid_steps": f"{best.share_of_grid_steps:.3f}", "target_met": int(best.meets_target),
              **{f"{name}_regret_mean": f"{row.regret_mean:.3f}" for name, row in default.iterrows()}}
    return "RESULT " + " ".join(f"{key}={value}" for key, value in fields.items()).replace("+", "_")


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    if not args.replay:
        known = simulated.simulated_problem(args.rm_type, space_for(args.rm_type)).models
        unknown = sorted(set(args.models or ()) - set(known))
        if unknown:
            print(f"error: no published {args.rm_type} score for {', '.join(unknown)} (python -m rmsweep.run "
                  "--list-families lists the registry)", file=sys.stderr)
            return 2
    if args.engine == "tune":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    started = time.time()
    try:
        with tempfile.TemporaryDirectory() as storage:
            results = run_all(args, storage)
    except replay.ReplayError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = summarize(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results.drop(columns="recommended").to_csv(out / "results.csv", index=False)
    summary.to_csv(out / "summary.csv")
    plot.regret_vs_cost(results[results["setting"] == "default"], out / "regret_vs_cost.png")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(summary.to_string(float_format=lambda x: f"{x:.3g}"))
    log.info("%d sweeps in %.0f s; tables and plot in %s", len(results), time.time() - started, out)
    print(result_line(summary))
    return 0
