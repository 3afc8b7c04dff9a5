"""The `rmsweep` console script: `rmsweep run|evaluate|select|status|features ...`, the same as
`python -m rmsweep.<command>`."""
import importlib
import sys

COMMANDS = {
    "run": "sweep base models: Optuna per model, ASHA, Ray Train trials, scoring, selector",
    "evaluate": "score a checkpoint on RewardBench / RewardBench 2, or rescore saved scores",
    "select": "fit the base-model selector and rank models nobody has trained yet",
    "status": "summarise a running or finished sweep from its run directory",
    "features": "measure the selector's cheap features (IFEval, ToxiGen, HumanEval+, MBPP+) of any models",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        usage = "usage: rmsweep COMMAND [--help | options]\n\ncommands:\n" + "\n".join(
            f"  {name:{width}}  {text}" for name, text in COMMANDS.items())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"rmsweep: error: unknown command {argv[0]!r} (one of {', '.join(COMMANDS)})", file=sys.stderr)
            return 2
        print(usage)
        return 0
    command = importlib.import_module(f"rmsweep.cli.{argv[0]}")
    return command.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
