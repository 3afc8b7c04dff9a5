"""Run search strategies on a simulated sweep of the registry's models: python -m rmsweep.simulate

Each strategy runs the shipped sweep (searcher, per-model ASHA, ledger, aggregator, inside Ray Tune) once per
seed, on response surfaces built from published results (docs/simulator.md), with trials that report simulated
curves instead of training. Prints, per strategy, the regret of what the sweep recommends (the true best
checkpoint's score less the true score of the recommended one, RewardBench points; median and quartiles over
seeds), how often it picked each size group's true best model, and the trial-steps it spent as a share of the
full grid's; ends with a RESULT line. In progress: not yet fast enough for the paper's 40 models x 10 learning
rates x 20 seeds (docs/simulator.md).
"""
import argparse
import logging
import sys
import tempfile

import pandas as pd

from rmsweep.cli.common import OneLineParser, setup_logging
from rmsweep.simulate import sweep as simulated
from rmsweep.simulate.surface import SimulationSettings
from rmsweep.sweep import spaces

log = logging.getLogger("rmsweep")


def parse_args(argv=None):
    parser = OneLineParser(prog="python -m rmsweep.simulate", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", choices=list(simulated.STRATEGIES),
                        default=list(simulated.STRATEGIES), help="default: all")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per strategy (default: 3)")
    parser.add_argument("--models", nargs="+", help="registry names (default: every model with a published score)")
    parser.add_argument("--rm-type", choices=("bt", "regression"), default="bt")
    parser.add_argument("--noise-scale", type=float, default=1.0, help="multiplies both noise terms (default: 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="simulated trials at once (default: 8)")
    return parser.parse_args(argv)


def summarize(results: pd.DataFrame, grid_steps: int) -> pd.DataFrame:
    groups = sorted(column.removeprefix("picked_best_") for column in results if column.startswith("picked_best_"))
    summary = results.groupby("strategy").agg(
        regret_median=("regret_all", "median"), regret_q1=("regret_all", lambda x: x.quantile(0.25)),
        regret_q3=("regret_all", lambda x: x.quantile(0.75)), regret_mean=("regret_all", "mean"),
        share_of_grid_steps=("trial_steps", lambda x: x.mean() / grid_steps),
        **{f"picked_best_{group}": (f"picked_best_{group}", "mean") for group in groups})
    return summary


def main(argv=None) -> int:
    import ray

    args = parse_args(argv)
    setup_logging()
    known = simulated.surfaces(args.rm_type, [(1e-6, 1, 1.0)])
    unknown = sorted(set(args.models or ()) - set(known))
    if unknown:
        print(f"error: no published {args.rm_type} score for {', '.join(unknown)} (python -m rmsweep.run "
              "--list-families lists the registry)", file=sys.stderr)
        return 2
    space = spaces.load(None, args.rm_type, "full", name="paper-bt" if args.rm_type == "bt" else "paper-regression")
    settings = SimulationSettings(noise_scale=args.noise_scale)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for name in args.strategies:
            for seed in range(args.seeds):
                figures = simulated.run(args.rm_type, space, simulated.STRATEGIES[name], f"{storage}/{name}-{seed}",
                                        seed, settings, args.models, args.concurrency)
                log.info("%s, seed %d: regret %.2f points, %d trials, %d trial-steps", name, seed,
                         figures["regret_all"], figures["trials"], figures["trial_steps"])
                rows.append({"strategy": name, "seed": seed, **figures})
    grid_steps = simulated.grid_trial_steps(space, len(args.models or known))
    summary = summarize(pd.DataFrame(rows), grid_steps)
    print(summary.to_string(float_format=lambda x: f"{x:.3g}"))
    print("RESULT " + " ".join(f"{strategy}_regret_median={row.regret_median:.3f} "
                               f"{strategy}_share_of_grid_steps={row.share_of_grid_steps:.3f}"
                               for strategy, row in summary.iterrows()).replace("+", "_"))
    return 0
