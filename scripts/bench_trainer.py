"""rmsweep's trainer vs TRL's RewardTrainer vs a plain PyTorch loop: one run, same hardware, model, data,
batch, dtype and steps; each contender in its own process, one after the other.

    python scripts/bench_trainer.py                 # CPU
    python scripts/bench_trainer.py --device cuda --preset qwen2.5-1.5b
        # bf16 on a GPU, a model of Qwen2.5-1.5B's shape; adds MFU

Data (`builtin_corpus.long_tailed_pairs`): conversations like HelpSteer2's: 29% multi-turn (its dataset card),
1-3 earlier exchanges; user turns median 60 words, assistant turns and responses median 300, log-normal with long
tails, at most --max-length tokens a side (one word, one token of the tiny word-level tokenizer). One epoch over
exactly steps x batch pairs, so every contender trains on the same examples. Tokens/s counts the real (non-pad)
tokens of chosen and rejected, prompt included on each side, over the training loop only; MFU counts the tokens
each contender computed (a shared prompt once): 6 x parameters x those tokens/s over the peak, the peak measured
by a bf16 matrix product in this run. Validation accuracy: every trained model scored the same way on the same
held-out pairs.
Contenders:
- rmsweep: `loop.fit_reward_model` as a trial runs it with --tokens-per-micro-batch: each pair's prompt computed
  once (its default on a CPU, not on a GPU), then its chosen and rejected rests; each step's examples sorted by
  length and cut into forward passes of at most that many tokens; then with fixed micro-batches (split where
  padding is least), with the shared prompt forced on (GPU) or off (CPU), without sorting, with gradient
  checkpointing, and on a GPU with bf16 weights (fp32 otherwise, bf16 autocast), with Liger's kernels
  (skipped, and named, where liger-kernel is not installed) and with FlexAttention packing each pass's pairs
  into one row, no padding, each pair's prompt once (its default there) or not (the token budget then counts
  real tokens; its kernels compile in a one-step warm-up trial first, timed apart);
- TRL: `RewardTrainer` with `RewardConfig`, as its docs show, the same batch split (micro-batch x accumulation),
  gradient checkpointing off (its default is on); skipped, and named, where trl or datasets is not installed;
- plain: a PyTorch loop with right padding, random micro-batches, chosen and rejected in two passes.
"""
import argparse
import importlib.util
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pandas as pd
import torch

from rmsweep.config import ModelSpec, TrainConfig, TrainingSettings
from rmsweep.data import batching, builtin_corpus, tokenization
from rmsweep.model import reward_model
from rmsweep.training import loop, step

# Model shapes (qwen2 architecture, random weights, the tiny word-level tokenizer, so no download): a small one
# for CPUs, and Qwen2.5-1.5B's published shape for GPUs (1.3B parameters without its 151k-token embedding).
PRESETS = {
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, max_position_embeddings=4096),
    "micro": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, max_position_embeddings=4096),  # gpu_check.sh's dry mode
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, head_dim=64, max_position_embeddings=32768, rope_theta=1e6),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, head_dim=128, max_position_embeddings=32768, rope_theta=1e6),
}
DEFAULT_LR = {"tiny": 1e-3, "micro": 1e-3, "qwen2.5-0.5b": 1e-5, "qwen2.5-1.5b": 1e-5}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=32, help="optimizer steps (default: 32)")
    parser.add_argument("--batch", type=int, default=16, help="pairs per step (default: 16)")
    parser.add_argument("--micro-batch", type=int, default=4, help="pairs per forward pass (default: 4)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--tokens-per-micro-batch", type=int,
                        help="rmsweep's --tokens-per-micro-batch: tokens one forward pass computes, padding "
                        "included (default: --max-length, one longest sequence)")
    parser.add_argument("--lr", type=float, help="default: 1e-3 for tiny, 1e-5 for qwen2.5-1.5b")
    parser.add_argument("--validation-pairs", type=int, default=256)
    parser.add_argument("--preset", choices=PRESETS, default="tiny",
                        help="model shape, random weights (default: tiny, %(tiny)s)" % {"tiny": PRESETS["tiny"]})
    parser.add_argument("--model", metavar="DIR", help="a base model checkpoint with its tokenizer, instead of a "
                        "preset")
    parser.add_argument("--peak-tflops", type=float,
                        help="the GPU's bf16 peak, for MFU (default: measured here by a bf16 matrix product)")
    parser.add_argument("--only", nargs="+", help="run only these contenders")
    args = parser.parse_args(argv)
    args.lr = args.lr or DEFAULT_LR[args.preset]
    args.tokens_per_micro_batch = args.tokens_per_micro_batch or args.max_length
    return args


def records(rows):
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "margin": 1.0} for r in rows]


def measured_peak_tflops(size: int = 8192, repeats: int = 10) -> float:
    """bf16 matrix-product throughput on this GPU: the mean of `repeats` products after three warm-ups."""
    a, b = (torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def peak_memory_mb(device: str, baseline_kb: int) -> float:
    """Peak GPU memory allocated, or on the CPU the process's peak resident memory above its start."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024


def load(spec: ModelSpec):
    """(tokenizer, sequence-classification model): every contender starts from these same weights."""
    tokenizer, rewarder = reward_model.load_reward_model(spec, "bt")
    return tokenizer, rewarder.model


def validation_accuracy(model, tokenizer, validation, max_length, device) -> float:
    pairs = tokenization.tokenize_pairs(tokenizer, validation, max_length)
    chosen, rejected = reward_model.score_pairs(reward_model.RewardModel(model).to(device), pairs,
                                                tokenizer.pad_token_id, device)
    return float((chosen[:, 0] > rejected[:, 0]).float().mean())


def run_rmsweep(args, spec, data, warm_up=False, **options):
    """`options`: TrainConfig fields that differ from rmsweep's defaults (shared_prompt=False, ...). `warm_up`:
    first a one-step trial in this process, timed apart, which compiles the kernels (as a long trial's first
    steps would): the few steps measured here would otherwise be mostly compiling."""
    reports = []
    config = TrainConfig(
        model="bench", model_spec=spec, lr=args.lr, epochs=1,
        training=TrainingSettings(global_batch_size=args.batch, micro_batch_size=args.micro_batch, warmup_steps=1,
                                  eval_every=args.steps, max_length=args.max_length),
        gradient_checkpointing=False, tokens_per_micro_batch=args.tokens_per_micro_batch,
    ).replace(**options)
    warm_up_seconds = None
    if warm_up:
        started = time.perf_counter()
        loop.fit_reward_model(config, {"train": data["train"][: args.batch], "validation": data["validation"][:8]},
                              lambda metrics, checkpoint: None, device=args.device)
        warm_up_seconds = time.perf_counter() - started
    loop.fit_reward_model(config, data, lambda metrics, checkpoint: reports.append(metrics), device=args.device)
    final = reports[-1]
    # A trial that ran out of memory or diverged ends early and reports its best accuracy so far (0 before its
    # first evaluation): not a result to compare.
    if final["out_of_memory"] or final["diverged"]:
        raise RuntimeError(f"stopped at step {final['step']} of {final['total_steps']}: "
                           f"{final['out_of_memory'] or 'diverged (non-finite loss)'}")
    computed = args.computed_tokens if final["layout"] in step.SHARED_PROMPT_LAYOUTS else args.train_tokens
    return {"tokens": args.train_tokens, "computed_tokens": computed,
            "seconds": args.train_tokens / final["tokens_per_second"], "val_accuracy": final["val_accuracy"],
            **({"warm_up_seconds": warm_up_seconds} if warm_up else {})}


def run_plain(args, spec, data):
    tokenizer, model = load(spec)
    model = model.to(args.device)
    pairs = tokenization.tokenize_pairs(tokenizer, data["train"], args.max_length).sequences
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    order = np.random.default_rng(0).permutation(len(pairs))
    accumulation = args.batch // args.micro_batch
    tokens, started = 0, time.perf_counter()
    model.train()
    for step_index in range(len(pairs) // args.batch):
        for start in range(step_index * args.batch, (step_index + 1) * args.batch, args.micro_batch):
            micro = [pairs[i] for i in order[start: start + args.micro_batch]]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device == "cuda"):
                chosen = model(*tokenization.pad([c for c, _ in micro], tokenizer.pad_token_id, args.device)).logits
                rejected = model(*tokenization.pad([r for _, r in micro], tokenizer.pad_token_id, args.device)).logits
            loss = -torch.nn.functional.logsigmoid(chosen.float() - rejected.float()).mean() / accumulation
            loss.backward()
            tokens += sum(len(c) + len(r) for c, r in micro)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "computed_tokens": tokens, "seconds": seconds,
            "val_accuracy": validation_accuracy(model, tokenizer, data["validation"], args.max_length, args.device)}


def run_trl(args, spec, data):
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from trl import RewardConfig, RewardTrainer

    tokenizer, model = load(spec)
    rows = [{"prompt": row["prompt"], "chosen": [{"role": "assistant", "content": row["chosen"]}],
             "rejected": [{"role": "assistant", "content": row["rejected"]}]} for row in data["train"]]
    # Named fingerprint: datasets would otherwise hash the table by pickling it, which failed on the GPU machine
    # (Python 3.12, dill 0.4.1: "Can't pickle MonthDayNano").
    dataset = Dataset(InMemoryTable.from_pylist(rows), fingerprint="bench-trainer-train")
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = RewardTrainer(
            model=model, processing_class=tokenizer, train_dataset=dataset,
            args=RewardConfig(
                output_dir=output_dir, per_device_train_batch_size=args.micro_batch,
                gradient_accumulation_steps=args.batch // args.micro_batch, max_steps=args.steps,
                learning_rate=args.lr, lr_scheduler_type="constant", max_length=args.max_length,
                bf16=args.device == "cuda", use_cpu=args.device == "cpu", report_to="none", save_strategy="no",
                logging_steps=args.steps, disable_tqdm=True, seed=0, dataloader_num_workers=0,
                # RewardConfig turns checkpointing on by default; off, like the contenders it is compared with
                # (the "gradient checkpointing" row shows what it costs).
                gradient_checkpointing=False,
            ),
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    trained = trainer.train_dataset
    if len(trained) != len(dataset):  # it would cycle through fewer examples than the others trained on
        raise RuntimeError(f"TRL dropped {len(dataset) - len(trained)} pairs longer than max_length")
    tokens = sum(len(row["chosen_ids"]) + len(row["rejected_ids"]) for row in trained)
    return {"tokens": tokens, "computed_tokens": tokens, "seconds": seconds,
            "val_accuracy": validation_accuracy(trainer.model, tokenizer, data["validation"], args.max_length,
                                                args.device)}


def _rmsweep(**options):
    return lambda args, spec, data: run_rmsweep(args, spec, data, **options)


CONTENDERS = {
    "rmsweep": run_rmsweep,
    "rmsweep, fixed micro-batches": _rmsweep(tokens_per_micro_batch=None),
    "rmsweep, shared prompt": _rmsweep(shared_prompt=True),
    "rmsweep, no shared prompt": _rmsweep(shared_prompt=False),
    "rmsweep, no length grouping": _rmsweep(tokens_per_micro_batch=None, length_grouping=False),
    "rmsweep, gradient checkpointing": _rmsweep(gradient_checkpointing=True),
    "rmsweep, bf16 weights": _rmsweep(precision="bf16"),
    "rmsweep, Liger kernels": _rmsweep(liger=True),
    "rmsweep, FlexAttention packing": _rmsweep(attention="flex_attention", warm_up=True),
    "rmsweep, FlexAttention packing, no shared prompt": _rmsweep(attention="flex_attention", shared_prompt=False,
                                                                 warm_up=True),
    "TRL RewardTrainer": run_trl,
    "plain PyTorch loop": run_plain,
}
# Contenders with nothing to show on one device: no autocast to compare bf16 weights with on a CPU; rmsweep's
# default shares the prompt on a CPU and not on a GPU, so one of the two forced settings repeats it.
SAME_AS_DEFAULT = {"cpu": {"rmsweep, bf16 weights": "GPU only", "rmsweep, shared prompt": "rmsweep's default here",
                           "rmsweep, Liger kernels": "GPU only",
                           "rmsweep, FlexAttention packing": "GPU only: PyTorch has no FlexAttention backward on CPUs",
                           "rmsweep, FlexAttention packing, no shared prompt": "GPU only"},
                   "cuda": {"rmsweep, no shared prompt": "rmsweep's default here"}}
NEEDS = {"TRL RewardTrainer": ("trl", "datasets"), "rmsweep, Liger kernels": ("liger_kernel",)}


def runnable(name: str, device: str) -> str:
    """Why a contender is not run here, or ""."""
    if name in SAME_AS_DEFAULT[device]:
        return SAME_AS_DEFAULT[device][name]
    missing = [package for package in NEEDS.get(name, ()) if importlib.util.find_spec(package) is None]
    return f"{' and '.join(missing)} not installed" if missing else ""


def run_one(name, args, spec, data):
    """In a fresh process: one contender's figures, its peak memory included."""
    torch.manual_seed(0)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    figures = CONTENDERS[name](args, spec, data)
    return {**figures, "peak_memory_mb": peak_memory_mb(args.device, baseline)}


def describe_data(args, tokenizer, train) -> str:
    """The training pairs' length distributions; sets the token counts every contender is measured by."""
    tokenized = tokenization.tokenize_pairs(tokenizer, train, args.max_length)
    # Real tokens of one epoch, as rmsweep's trainer tokenizes them: it reports tokens/s, not the count.
    args.train_tokens = sum(len(chosen) + len(rejected) for chosen, rejected in tokenized.sequences)
    prompts = batching.prompt_lengths(tokenized)
    args.computed_tokens = int(batching.unit_lengths(tokenized, prompts).sum())  # a shared prompt computed once

    def spread(values) -> str:
        return " / ".join(f"{np.percentile(values, q):.0f}" for q in (10, 50, 90, 100))
    responses = [len(side) - prompt for pair, prompt in zip(tokenized.sequences, prompts) for side in pair]
    turns = np.array([len(row["prompt"]) for row in train])
    return (f"{len(train)} training pairs ({(turns > 1).mean():.0%} multi-turn); tokens p10 / median / p90 / max: "
            f"prompt {spread(prompts)}, response {spread(responses)}; shared prompts save "
            f"{1 - args.computed_tokens / args.train_tokens:.0%} of the tokens")


def run_contenders(args, spec, data) -> dict:
    results = {}
    for name in args.only or CONTENDERS:
        if why := runnable(name, args.device):
            print(f"  {name}: skipped ({why})", flush=True)
            continue
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:  # a fresh process each
            try:
                results[name] = pool.submit(run_one, name, args, spec, data).result()
            except Exception as error:  # one contender's failure must not cost the others' figures
                print(f"  {name}: failed, left out: {type(error).__name__}: {error}", flush=True)
                continue
        figures = results[name]
        flops = 6 * args.params * figures["computed_tokens"] / figures["seconds"]
        mfu = f", MFU {flops / (args.peak_tflops * 1e12):.1%}" if args.device == "cuda" else ""
        warm_up = (f", after a {figures['warm_up_seconds']:.0f} s warm-up trial" if "warm_up_seconds" in figures
                   else "")
        print(f"  {name}: {figures['tokens'] / figures['seconds']:,.0f} tokens/s{mfu}, validation accuracy "
              f"{figures['val_accuracy']:.3f}, peak memory {figures['peak_memory_mb']:,.0f} MB{warm_up}", flush=True)
    return results


def headline(table: pd.DataFrame) -> dict:
    def ratio(numerator: str, denominator: str, column="tokens_per_second"):
        if {numerator, denominator} <= set(table.index):
            return table.loc[numerator, column] / table.loc[denominator, column]
        return None

    return {
        "rmsweep_vs_trl": ratio("rmsweep", "TRL RewardTrainer"),
        "rmsweep_vs_plain": ratio("rmsweep", "plain PyTorch loop"),
        "shared_prompt_gain": ratio("rmsweep", "rmsweep, no shared prompt") or ratio("rmsweep, shared prompt",
                                                                                 "rmsweep"),
        "token_budget_gain": ratio("rmsweep", "rmsweep, fixed micro-batches"),
        "length_grouping_gain": ratio("rmsweep, fixed micro-batches", "rmsweep, no length grouping"),
        "bf16_weights_gain": ratio("rmsweep, bf16 weights", "rmsweep"),
        "liger_gain": ratio("rmsweep, Liger kernels", "rmsweep"),
        "flex_packing_gain": ratio("rmsweep, FlexAttention packing", "rmsweep"),
        "flex_packing_vs_trl": ratio("rmsweep, FlexAttention packing", "TRL RewardTrainer"),
        "flex_shared_prompt_gain": ratio("rmsweep, FlexAttention packing",
                                         "rmsweep, FlexAttention packing, no shared prompt"),
        "checkpointing_speed": ratio("rmsweep, gradient checkpointing", "rmsweep"),
        "checkpointing_memory": ratio("rmsweep, gradient checkpointing", "rmsweep", "peak_memory_mb"),
        **{f"{key}_val_accuracy": table["val_accuracy"].get(name) for key, name in
           (("rmsweep", "rmsweep"), ("trl", "TRL RewardTrainer"), ("plain", "plain PyTorch loop"))},
        **({f"{key}_mfu": table["MFU"].get(name) for key, name in
            (("rmsweep", "rmsweep"), ("fixed_micro_batches", "rmsweep, fixed micro-batches"),
             ("flex_packing", "rmsweep, FlexAttention packing"), ("trl", "TRL RewardTrainer"))}
           if "MFU" in table else {}),
    }


def main(argv=None):
    args = parse_args(argv)
    # Room for the chat template's tokens (TRL's rendering adds a few): no text is cut (rmsweep) or dropped
    # (TRL filters out longer ones).
    rows = builtin_corpus.long_tailed_pairs(args.steps * args.batch + args.validation_pairs, seed=0,
                                            max_tokens=args.max_length - 32)
    data = {"train": records(rows[: args.steps * args.batch]), "validation": records(rows[args.steps * args.batch:])}
    # A real checkpoint (its tokenizer beside it), or a preset's shape with the word-level tokenizer.
    spec = (ModelSpec(args.model, "") if args.model
            else ModelSpec("tiny", "qwen2", sizes=tuple(PRESETS[args.preset].items())))
    tokenizer, model = load(spec)
    params = args.params = model.num_parameters()
    del model  # each contender loads its own, in its own process
    print(f"model: {params / 1e6:.1f}M parameters; {describe_data(args, tokenizer, data['train'])}; {args.steps} "
          f"steps of {args.batch} pairs ({args.tokens_per_micro_batch} tokens per pass, or {args.micro_batch} "
          f"pairs) on {args.device}", flush=True)
    if args.device == "cuda" and not args.peak_tflops:
        args.peak_tflops = measured_peak_tflops()
        print(f"bf16 matrix-product peak measured: {args.peak_tflops:.0f} TFLOP/s", flush=True)
    table = pd.DataFrame(run_contenders(args, spec, data)).T.astype(float)
    table["tokens_per_second"] = table["tokens"] / table["seconds"]
    if "TRL RewardTrainer" in table.index:
        table["vs_TRL"] = table["tokens_per_second"] / table.loc["TRL RewardTrainer", "tokens_per_second"]
    if args.device == "cuda":
        table["MFU"] = 6 * params * table["computed_tokens"] / table["seconds"] / (args.peak_tflops * 1e12)
    print()
    print(table.to_string(float_format=lambda x: f"{x:,.3g}"))
    figures = headline(table)
    print("RESULT " + " ".join(f"{key}={value:.3f}" for key, value in figures.items() if value is not None))


if __name__ == "__main__":
    main()
