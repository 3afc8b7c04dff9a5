"""The flags of `python -m rmsweep.run` (argparse construction only)."""
import argparse
from pathlib import Path

from rmsweep import config
from rmsweep.analysis import scoring
from rmsweep.cli.common import OneLineParser
from rmsweep.sweep import plan, spaces

WEIGHT_CHOICES = ("search", *scoring.PUBLISHED_WEIGHTS)
DESCRIPTION = """Sweep every base model of a family: python -m rmsweep.run --family gemma2 --scale tiny
or any candidates: python -m rmsweep.run --models Qwen/Qwen3-4B ./checkpoints/ours-sft gemma-2-2b-it

Validates everything before any compute (flags, search space, every data row), runs one Ray Tune sweep
(an Optuna study per base model, TPE or a grid; ASHA per base model; one Ray Train TorchTrainer per trial),
scores each model's best checkpoint on the benchmarks, and leaves in <storage>/<name>/: trials.csv,
best_per_model.csv, selector.json, report.md (+ plots), scores/ (per-completion scores) and sweep.json.

Search spaces (--space NAME, in search_spaces/): default (a log-uniform lr range), paper-bt and
paper-regression (the grids of arXiv 2505.10775), rewardbench2 (the grid and Tulu 3 + Skywork mix of
RewardBench 2). Each names its data; --scale tiny swaps in the built-in corpus.
"""


def _auto_or(number_type):
    def parse(text: str):
        return None if text == "auto" else number_type(text)

    parse.__name__ = f"auto or {number_type.__name__}"  # argparse names the type in its error message
    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


_positive_int.__name__ = "positive integer"


def _candidate_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("candidates", "which base models to sweep")
    group.add_argument(
        "--family", metavar="KEY", help="registry family to sweep, e.g. gemma2, qwen2.5, llama3.1 (see "
        "--list-families); with --models, the registry names there must belong to it"
    )
    group.add_argument(
        "--models", nargs="+", metavar="MODEL",
        help="the base models to sweep, mixed: registry names, hub ids (org/name or org/name@revision) and local "
        "checkpoint folders; a model outside the registry has its facts read from its config (docs/candidates.md)"
    )
    group.add_argument(
        "--model-set", metavar="FILE", type=Path,
        help="a YAML file naming the candidates (name, source = hub id or folder, revision, stage, family, notes), "
        "instead of --family or --models; e.g. docs/examples/model-set.yaml"
    )
    group.add_argument("--list-families", action="store_true", help="print the families and their models, then exit")
    group.add_argument(
        "--scale",
        choices=("tiny", "full"),
        default="full",
        help="tiny: random-weight twins of each architecture, offline, minutes on a laptop; "
        "full: the real checkpoints (default: full)",
    )
    group.add_argument(
        "--model-dir", metavar="DIR", type=Path, help="load real checkpoints from DIR/<model name> instead of the hub"
    )
    group.add_argument(
        "--trust-remote-code", action="store_true",
        help="let a model whose architecture transformers lacks run its repository's own Python code (e.g. "
        "Phi-3-small); off by default, since that code runs with your credentials. Weights are read from "
        "safetensors only, either way",
    )
    group.add_argument(
        "--triage", metavar="K", type=int,
        help="rank the candidates first (the selector's prediction of each one's RewardBench score, from features "
        "published or measured; missing ones are measured, docs/candidates.md) and sweep only the top K, plus "
        "--pin's"
    )
    group.add_argument("--pin", nargs="+", metavar="NAME", default=[],
                        help="with --triage: sweep these candidates whatever their rank (your current baseline, say)")
    group.add_argument(
        "--features-data-dir", metavar="DIR", type=Path,
        help="with --triage: read benchmarks from DIR/<name>.jsonl (local copies in the hub schema) instead of the "
        "hub, as python -m rmsweep.features --data-dir does"
    )


def _reward_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reward model", "what each trial trains")
    group.add_argument(
        "--rm-type",
        choices=config.RM_TYPES,
        default="bt",
        help="bt: Bradley-Terry on preference pairs; regression: 5 attribute heads, MSE, on ratings; "
        "bnrm: Bradley-Terry with the Bayesian non-negative head (+1e-5 KL) (default: bt)",
    )
    group.add_argument(
        "--bt-loss",
        choices=config.BT_VARIANTS,
        default="plain",
        help="bt and bnrm: plain -log sigmoid(rc - rr); margin subtracts the pair's |strength| inside; "
        "scaled multiplies by it (default: plain)",
    )
    group.add_argument(
        "--reward-centering", metavar="C", type=float, default=0.0,
        help="bt and bnrm: add C x mean((rc + rr)^2) to the loss; about 0.01 is usual (default: 0, off)",
    )
    group.add_argument(
        "--regression-weights",
        choices=WEIGHT_CHOICES,
        default="search",
        help="regression: how the 5 attributes become one reward for pairwise benchmarks: search (the paper's "
        "21^5 grid on the validation pairs, per model) or a published vector (default: search)",
    )


def _search_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search", "which (lr, epochs) points each base model tries, on which data")
    group.add_argument(
        "--space", metavar="NAME|FILE",
        help="search space: a shipped one's NAME (search_spaces/NAME.yaml: default, paper-bt, paper-regression, "
        "rewardbench2) or the path of your own YAML file (default: the family's file, else default)",
    )
    group.add_argument(
        "--search-spaces",
        metavar="DIR",
        type=Path,
        default=spaces.DEFAULT_DIR,
        help="folder of <family>.yaml / default.yaml search spaces (default: the repo's)",
    )
    group.add_argument(
        "--sampler", choices=config.SAMPLERS, default="tpe",
        help="per base model: tpe (Optuna's TPE), gp (Optuna's Gaussian-process sampler), random, or grid (every "
        "(lr, epochs) point of a space whose lr is a list; tpe and gp search such a list on its log scale) "
        "(default: tpe)",
    )
    group.add_argument(
        "--num-samples", metavar="N", type=int,
        help=f"trials per base model (default: {plan.DEFAULT_TPE_SAMPLES}, the whole grid with grid)",
    )
    group.add_argument(
        "--transfer", action="store_true",
        help="sweep the models one after another, smallest first, each model's first trial at the learning rate "
        "that the models finished before it predict (log lr linear in log parameters, shifted by the model's "
        "family's residual); see docs/simulator.md",
    )
    group.add_argument(
        "--budget", metavar="STEPS", type=int,
        help="budget-aware sweep: spend at most STEPS trial-steps (optimizer steps summed over trials) with "
        "successive halving over base models, seeded by the selector's predictions, so that unpromising models "
        "get fewer trials (default: off, --num-samples trials per model)",
    )
    group.add_argument(
        "--data-dir", metavar="DIR", type=Path,
        help="read each dataset from DIR/<source> (a folder or a .jsonl/.json/.parquet/.csv file in the hub "
        "schema) instead of the hub, e.g. DIR/helpsteer2-preference.jsonl",
    )
    group.add_argument(
        "--seed", metavar="N", type=int, default=0, help="seed for samplers, model init and data order (default: 0)"
    )
    group.add_argument(
        "--data-seed", metavar="N", type=int,
        help="seed for the data itself: the built-in corpus's draw and the shuffle of a training mix (default: "
             "--seed); keep it and change --seed to see how much a sweep's answer owes to its training seed",
    )


def _placement_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("placement", "where and how wide each trial runs")
    group.add_argument(
        "--workers-per-trial", metavar="N", type=_auto_or(int), default=None,
        help="data-parallel workers per trial; auto: 1 on a cluster without GPUs, else as many GPUs as the "
        "model's weights, gradients and AdamW state need (default: auto)",
    )
    group.add_argument(
        "--cpus-per-worker", metavar="N", type=float, default=1.0, help="CPUs reserved per worker (default: 1)"
    )
    group.add_argument(
        "--gpus-per-worker", metavar="N", type=_auto_or(float), default=None,
        help="GPUs per worker; auto: 1 if the cluster has GPUs, else 0 (default: auto)",
    )
    group.add_argument(
        "--max-concurrent-trials", metavar="N", type=int,
        help="trials running at once, at most what the cluster holds (default: the cluster's capacity, shared "
        "evenly with the other rmsweep sweeps running on it when this one starts)",
    )
    group.add_argument(
        "--strategy", choices=("auto", *config.STRATEGIES), default="auto",
        help="how a trial's workers split the model: ddp (each holds it all), fsdp (each holds a shard); "
        "auto: fsdp where one GPU cannot hold the training state (default: auto)",
    )
    group.add_argument(
        "--max-failures", metavar="N", type=int, default=3,
        help="restarts of a trial whose worker dies (a lost node, a killed process), each from the trial's "
        "latest evaluation (default: 3)",
    )
    group.add_argument(
        "--gpu-memory-gb", metavar="GB", type=float, default=80.0,
        help="memory of one GPU, for the auto choices (default: 80, an A100/H100)",
    )


def _speed_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trial speed", "how each trial's steps run (docs/performance.md)")
    group.add_argument(
        "--attention", choices=config.ATTENTIONS, default="auto",
        help="each trial's attention implementation in transformers; flex_attention (PyTorch's FlexAttention, "
        "GPUs only) and flash_attention_2 (needs the flash-attn package) run packed rows per sequence, so "
        "--padding-free auto packs with them; auto: transformers' choice for the model, SDPA for most (default: "
        "auto)",
    )
    group.add_argument(
        "--padding-free", choices=("auto", "on", "off"), default="auto",
        help="pack each micro-batch's sequences in one row instead of padding them; auto: where attention runs "
        "per packed sequence (--attention flex_attention or flash_attention_2), else length-grouped padded "
        "micro-batches (default: auto)",
    )
    group.add_argument(
        "--shared-prompt", choices=("auto", "on", "off"), default="auto",
        help="compute each pair's prompt once for both responses (rewards equal to two sequences'), where the "
        "attention takes custom masks (eager, SDPA; not flash-attention, which --padding-free uses instead) and "
        "gradient checkpointing is off (it turns off the key/value cache this needs); auto: so on CPU workers only "
        "(on a GPU it measured slower than padding, docs/performance.md); on: also on GPUs, and exit where the "
        "attention takes no mask (default: auto)",
    )
    group.add_argument(
        "--tokens-per-micro-batch", metavar="N", type=_positive_int, default=None,
        help="instead of the space's micro_batch_size examples per forward pass, as many as a pass of at most N "
        "tokens (padding included; packed rows have none) holds, each step's examples sorted by length; each "
        "step still trains on the same examples, so its gradient is unchanged (default: by examples)",
    )
    group.add_argument(
        "--precision", choices=config.PRECISIONS, default="bf16-autocast",
        help="on GPUs: bf16-autocast (bf16 compute, fp32 weights and AdamW state) or bf16 (bf16 weights: half "
        "the memory, less exact updates) (default: bf16-autocast)",
    )
    group.add_argument(
        "--compile", action="store_true",
        help="torch.compile each trial's model (pays on long trials on GPUs; compiling takes minutes)",
    )
    group.add_argument(
        "--liger", action="store_true",
        help="Liger's Triton kernels in each trial's model (norms, MLP, rotary embeddings; GPUs; needs the "
        "liger-kernel package on every node)",
    )
    group.add_argument(
        "--gradient-checkpointing", choices=("auto", "on", "off"), default="auto",
        help="recompute activations in the backward pass (less memory, about a third more compute); auto: where "
        "the training state and one micro-batch's activations (estimated from the model's config) would take more "
        "than 90%% of each GPU, and from the step that first runs out of memory "
        "without it, for that trial (a data-parallel one restarts, one of --max-failures) and the model's later "
        "ones (default: auto)",
    )


def _run_dir_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run directory", "where results go and what is kept")
    group.add_argument(
        "--storage",
        metavar="DIR|URI",
        default="rmsweep_runs",
        help="where run directories go: a local folder, a folder every node mounts (NFS), or s3://bucket/path, "
        "gs://bucket/path; a multi-node cluster needs one every node sees (default: ./rmsweep_runs)",
    )
    group.add_argument("--name", help="run name (default: <family>-<rm-type>-<scale>)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run directory of that name")
    group.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted sweep of this --storage and --name, with the same other flags: finished "
        "trials are kept, not run again; trials that were running go on from their latest checkpoint",
    )
    group.add_argument(
        "--keep-checkpoints", choices=config.KEEP_CHECKPOINTS, default="best",
        help="checkpoints left once trials finish: best (one per trial), all (every evaluation's), none "
        "(deleted once the best of each model is scored; scores/ keeps every completion's score) (default: best)",
    )
    group.add_argument(
        "--dry-run", action="store_true",
        help="check everything (flags, space, models, every data row, placement on the cluster) and print the plan; "
        "train nothing and write nothing",
    )
    group.add_argument("--verbose", action="store_true",
                        help="also show Ray's and Tune's own console output (hidden by default)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m rmsweep.run",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _candidate_args(parser)
    _reward_model_args(parser)
    _search_args(parser)
    _placement_args(parser)
    _speed_args(parser)
    _run_dir_args(parser)
    return parser.parse_args(argv)
