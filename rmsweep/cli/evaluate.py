"""Score a trained reward model on RewardBench or RewardBench 2, or rescore saved per-completion scores.

  python -m rmsweep.evaluate --checkpoint DIR --benchmark rewardbench [--data PATH]
  python -m rmsweep.evaluate --benchmark rewardbench2 --scores FILE

With --checkpoint, every completion of the benchmark is scored and the scores are saved as JSON lines, one row
per prompt: {"id", "subset", "scores": [correct completions first, then the others], "num_correct"}; that
file is what --scores reads back, without a model. Both print a table and write the results as JSON:
{"subsets": {name: score}, "sections": {name: score}, "overall": x}, scores as fractions in [0, 1].
"""
import argparse
import json
import math
import sys
from pathlib import Path

from rmsweep.analysis import evaluation, scoring
from rmsweep.sweep import atomic

HUB_DATA = "hub"
BUILTIN_DATA = "builtin"


class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


def read_scores(path: Path, benchmark: str) -> list[dict]:
    """Score rows from a JSON-lines file, each checked; a bad line raises UsageError naming it."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: line {number}: not JSON ({error.msg})") from None
        problem = _row_problem(row, benchmark)
        if problem:
            raise UsageError(f"{path}: line {number}: {problem}")
        rows.append(row)
    if not rows:
        raise UsageError(f"{path}: no score rows")
    return rows


def _row_problem(row, benchmark: str) -> str | None:
    if not isinstance(row, dict):
        return "expected a JSON object"
    missing = [key for key in ("id", "subset", "scores") if key not in row]
    if benchmark == "rewardbench2" and "num_correct" not in row:
        missing.append("num_correct")
    if missing:
        return f"missing {missing[0]!r}"
    scores = row["scores"]
    if not (isinstance(scores, list) and len(scores) >= 2 and all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in scores)):
        return "'scores' must be a list of at least 2 finite numbers"
    if benchmark == "rewardbench2":
        correct = row["num_correct"]
        if not (isinstance(correct, int) and 1 <= correct < len(scores)):
            return f"'num_correct' must be an integer from 1 to {len(scores) - 1}, got {correct!r}"
    return None


def _score_checkpoint(args) -> list[dict]:
    """Load the checkpoint and the benchmark, score every completion, save the rows."""
    import torch

    from rmsweep.data import sources
    from rmsweep.model import reward_model

    if not (args.checkpoint / reward_model.META_FILE).exists():
        raise UsageError(f"{args.checkpoint} is not an rmsweep checkpoint (no {reward_model.META_FILE})")
    tokenizer, model, meta = reward_model.load_checkpoint(args.checkpoint)
    data = args.data or (BUILTIN_DATA if meta["model_spec"]["source"] == "tiny" else HUB_DATA)
    try:
        if data == BUILTIN_DATA:
            built = sources.builtin(meta["rm_type"])
            groups, validation = built.eval[args.benchmark], built.validation
        else:
            groups, _ = sources.load_source(args.benchmark, "eval", None if data == HUB_DATA else Path(data))
            validation = None
    except sources.DataError as error:
        raise UsageError(str(error)) from None
    weights = None
    if meta["rm_type"] == "regression":
        weights = _weights(args.weights, meta, model, tokenizer, validation, args.max_length)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = evaluation.score_groups(model.to(device), tokenizer, groups, args.max_length, device, weights)
    scores_path = args.save_scores or args.checkpoint / f"{args.benchmark}-scores.jsonl"
    atomic.write_text(scores_path, "".join(json.dumps(row) + "\n" for row in rows))
    print(f"per-completion scores: {scores_path}")
    return rows


def _weights(choice: str | None, meta: dict, model, tokenizer, validation, max_length: int) -> list:
    if choice is None:
        return meta["regression_weights"]
    if choice in scoring.PUBLISHED_WEIGHTS:
        return list(scoring.PUBLISHED_WEIGHTS[choice])
    if choice == "search":
        if validation is None:
            raise UsageError("--weights search needs validation pairs; it works with --data builtin only, "
                             "else give the 5 weights")
        return evaluation.regression_weights(model, tokenizer, validation, "search", max_length)["weights"]
    try:
        weights = [float(w) for w in choice.split(",")]
    except ValueError:
        weights = []
    if len(weights) != 5:
        raise UsageError(f"--weights: expected search, {', '.join(scoring.PUBLISHED_WEIGHTS)} or 5 numbers "
                         f"separated by commas, got {choice!r}")
    return weights


def format_table(result: dict) -> str:
    from tabulate import tabulate

    overall = [("overall", result["overall"])]
    if "overall_with_prior_sets" in result:
        overall.append(("overall with Prior Sets", result["overall_with_prior_sets"]))
    return "\n\n".join(tabulate(rows, headers=headers, floatfmt=".4f") for rows, headers in (
        (result["subsets"].items(), ("subset", "score")), (result["sections"].items(), ("section", "score")),
        (overall, ("", "score"))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rmsweep.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", required=True, choices=scoring.BENCHMARKS)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, metavar="DIR", help="a checkpoint written by rmsweep")
    source.add_argument("--scores", type=Path, metavar="FILE", help="saved per-completion scores (JSON lines)")
    parser.add_argument("--data", metavar="PATH",
                        help="benchmark rows: a local file/folder in the hub schema, 'hub' (allenai/reward-bench "
                             "filtered, allenai/reward-bench-2 test) or 'builtin' (default: builtin for tiny "
                             "checkpoints, else hub)")
    parser.add_argument("--weights", metavar="W",
                        help="regression RMs: search (grid search on the built-in validation pairs), "
                             f"{', '.join(scoring.PUBLISHED_WEIGHTS)}, or 5 comma-separated weights "
                             "(default: the weights the checkpoint was validated with)")
    parser.add_argument("--max-length", type=int, default=2048, metavar="N",
                        help="tokens per completion; longer ones lose their start (default: 2048)")
    parser.add_argument("--save-scores", type=Path, metavar="FILE",
                        help="where --checkpoint saves the scores (default: DIR/<benchmark>-scores.jsonl)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="results JSON (default: <benchmark>-results.json beside the scores)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.checkpoint and args.data and args.data not in (HUB_DATA, BUILTIN_DATA) and not Path(args.data).exists():
            raise UsageError(f"--data {args.data}: no such file or folder")
        if args.scores and (args.data or args.weights):
            raise UsageError("--data and --weights go with --checkpoint; --scores holds final scores already")
        rows = _score_checkpoint(args) if args.checkpoint else read_scores(args.scores, args.benchmark)
        try:
            result = scoring.SCORERS[args.benchmark](rows)
        except (ValueError, KeyError) as error:
            raise UsageError(f"{args.scores or args.benchmark}: {error}") from None
    except UsageError as error:
        print(f"rmsweep.evaluate: error: {error}", file=sys.stderr)
        return 2
    beside = args.checkpoint if args.checkpoint else args.scores.parent
    out = args.out or beside / f"{args.benchmark}-results.json"
    atomic.write_text(out, json.dumps(result, indent=2))
    print(format_table(result))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
