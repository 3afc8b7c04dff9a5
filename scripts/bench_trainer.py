"""rmsweep's trainer vs TRL's RewardTrainer vs a plain PyTorch loop: one run, same hardware, model, data,
batch, dtype and steps; each contender in its own process, one after the other.

    python scripts/bench_trainer.py                 # CPU, about 10 minutes on 2 cores
    python scripts/bench_trainer.py --device cuda   # bf16; adds MFU (6 x params x tokens / time / peak)

Data: preference pairs whose prompt + response lengths spread like HelpSteer2's (tens to 2,000 tokens,
long-tailed; `synthetic.long_tailed_pairs`); one epoch over exactly steps x batch pairs, so every contender
trains on the same examples. Tokens/s counts real (non-pad) tokens of chosen and rejected, over the training
loop only. Validation accuracy: every trained model scored the same way on the same held-out pairs.
Contenders:
- rmsweep: `train.fit_reward_model` as a trial runs it (chosen and rejected in one pass, each step's examples
  sorted by length into micro-batches, padding-free where the attention supports it); also without length
  grouping, and forced padding-free, to show what each contributes;
- TRL: `RewardTrainer` with `RewardConfig`, as its docs show, the same batch split (micro-batch x accumulation);
- plain: a PyTorch loop with right padding, random micro-batches, chosen and rejected in two passes.
"""
import argparse
import json
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rmsweep import datasets, modeling, sources, synthetic, tiny, train

SIZES = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=64, max_position_embeddings=4096)
H100_BF16_PEAK_TFLOPS = 989.0  # dense


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps (default: 12)")
    parser.add_argument("--batch", type=int, default=16, help="pairs per step (default: 16)")
    parser.add_argument("--micro-batch", type=int, default=4, help="pairs per forward pass (default: 4)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--validation-pairs", type=int, default=128)
    parser.add_argument("--model", metavar="DIR", help="a sequence-classification checkpoint (default: a "
                        "qwen2-architecture model of %s, random weights)" % SIZES)
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS,
                        help="the GPU's dense bf16 peak, for MFU (default: H100's 989)")
    parser.add_argument("--only", nargs="+", help="run only these contenders")
    return parser.parse_args(argv)


def records(rows):
    return [{"prompt": sources.user_prompt(r["prompt"]), "chosen": r["chosen"], "rejected": r["rejected"],
             "margin": 1.0} for r in rows]


def peak_memory_mb(device: str, baseline_kb: int) -> float:
    """Peak GPU memory allocated, or on the CPU the process's peak resident memory above its start."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024


def validation_accuracy(model, tokenizer, validation, max_length, device) -> float:
    pairs = datasets.tokenize_pairs(tokenizer, validation, max_length)
    chosen, rejected = modeling.score_pairs(modeling.RewardModel(model).to(device), pairs, tokenizer.pad_token_id,
                                            device)
    return float((chosen[:, 0] > rejected[:, 0]).float().mean())


def run_rmsweep(args, model_dir, data, length_grouping=True, padding_free="auto"):
    reports = []
    config = dict(
        model="bench", model_spec={"source": str(model_dir), "architecture": "qwen2"}, rm_type="bt",
        bt_variant="plain", reward_centering=0.0, lr=args.lr, epochs=1, global_batch_size=args.batch,
        micro_batch_size=args.micro_batch, warmup_steps=1, eval_every=args.steps, max_length=args.max_length,
        seed=0, regression_weights=None, strategy="ddp", token_cache=None, data=data,
        data_fingerprints={"train": "t", "validation": "v"}, padding_free=padding_free,
        length_grouping=length_grouping, gradient_checkpointing=False,
    )
    train.fit_reward_model(config, lambda metrics, checkpoint: reports.append(metrics), device=args.device)
    final = reports[-1]
    tokens = sum(len(c) + len(r) for c, r in datasets.tokenize_pairs(
        AutoTokenizer.from_pretrained(model_dir), data["train"], args.max_length).sequences)
    return {"tokens": tokens, "seconds": tokens / final["tokens_per_second"], "val_accuracy": final["val_accuracy"],
            "padding_free": final["padding_free"]}


def run_plain(args, model_dir, data):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(args.device)
    pairs = datasets.tokenize_pairs(tokenizer, data["train"], args.max_length).sequences
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    order = np.random.default_rng(0).permutation(len(pairs))
    accumulation = args.batch // args.micro_batch
    tokens, started = 0, time.perf_counter()
    model.train()
    for step in range(args.steps):
        for start in range(step * args.batch, (step + 1) * args.batch, args.micro_batch):
            micro = [pairs[i] for i in order[start: start + args.micro_batch]]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device == "cuda"):
                chosen = model(*datasets.pad([c for c, _ in micro], tokenizer.pad_token_id, args.device)).logits
                rejected = model(*datasets.pad([r for _, r in micro], tokenizer.pad_token_id, args.device)).logits
            loss = -torch.nn.functional.logsigmoid(chosen.float() - rejected.float()).mean() / accumulation
            loss.backward()
            tokens += sum(len(c) + len(r) for c, r in micro)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds,
            "val_accuracy": validation_accuracy(model, tokenizer, data["validation"], args.max_length, args.device)}


def run_trl(args, model_dir, data):
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    dataset = Dataset.from_list([{"prompt": row["prompt"], "chosen": [{"role": "assistant", "content": row["chosen"]}],
                                  "rejected": [{"role": "assistant", "content": row["rejected"]}]}
                                 for row in data["train"]])
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = RewardTrainer(
            model=model, processing_class=tokenizer, train_dataset=dataset,
            args=RewardConfig(
                output_dir=output_dir, per_device_train_batch_size=args.micro_batch,
                gradient_accumulation_steps=args.batch // args.micro_batch, max_steps=args.steps,
                learning_rate=args.lr, lr_scheduler_type="constant", max_length=args.max_length,
                bf16=args.device == "cuda", use_cpu=args.device == "cpu", report_to="none", save_strategy="no",
                logging_steps=args.steps, disable_tqdm=True, seed=0, dataloader_num_workers=0,
            ),
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    trained = trainer.train_dataset
    tokens = sum(len(row["chosen_ids"]) + len(row["rejected_ids"]) for row in trained)
    return {"tokens": tokens, "seconds": seconds,
            "val_accuracy": validation_accuracy(trainer.model, tokenizer, data["validation"], args.max_length,
                                                args.device)}


CONTENDERS = {
    "rmsweep": run_rmsweep,
    "rmsweep, no length grouping": lambda args, model_dir, data: run_rmsweep(args, model_dir, data,
                                                                             length_grouping=False),
    "rmsweep, padding-free": lambda args, model_dir, data: run_rmsweep(args, model_dir, data, padding_free=True),
    "TRL RewardTrainer": run_trl,
    "plain PyTorch loop": run_plain,
}


def run_one(name, args, model_dir, data):
    """In a fresh process: one contender's figures, its peak memory included."""
    torch.manual_seed(0)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    figures = CONTENDERS[name](args, model_dir, data)
    return {**figures, "peak_memory_mb": peak_memory_mb(args.device, baseline)}


def main(argv=None):
    args = parse_args(argv)
    rows = synthetic.long_tailed_pairs(args.steps * args.batch + args.validation_pairs, seed=0,
                                       max_tokens=args.max_length)
    data = {"train": records(rows[: args.steps * args.batch]), "validation": records(rows[args.steps * args.batch:])}
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(args.model or scratch)
        if not args.model:  # one random init, saved, so every contender starts from the same weights
            tokenizer = tiny.tiny_tokenizer()
            torch.manual_seed(0)
            AutoModelForSequenceClassification.from_config(
                tiny.tiny_config("qwen2", tokenizer, 1, **SIZES)).save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
        params = AutoModelForSequenceClassification.from_pretrained(model_dir).num_parameters()
        lengths = datasets.sequence_lengths(datasets.tokenize_pairs(
            AutoTokenizer.from_pretrained(model_dir), data["train"], args.max_length))
        print(f"model: {params / 1e6:.1f}M parameters; {len(data['train'])} training pairs, longer side "
              f"{np.percentile(lengths, 10):.0f} / {np.median(lengths):.0f} / {np.percentile(lengths, 90):.0f} / "
              f"{lengths.max()} tokens (p10 / median / p90 / max); {args.steps} steps of {args.batch} pairs "
              f"({args.micro_batch} per pass) on {args.device}", flush=True)
        results = {}
        for name in args.only or CONTENDERS:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:  # a fresh process each
                results[name] = pool.submit(run_one, name, args, model_dir, data).result()
            print(f"  {name}: {results[name]['tokens'] / results[name]['seconds']:,.0f} tokens/s", flush=True)

    table = pd.DataFrame(results).T
    table["tokens_per_second"] = table["tokens"] / table["seconds"]
    if "TRL RewardTrainer" in results:
        table["vs_TRL"] = table["tokens_per_second"] / table.loc["TRL RewardTrainer", "tokens_per_second"]
    if args.device == "cuda":
        table["MFU"] = 6 * params * table["tokens_per_second"] / (args.peak_tflops * 1e12)
    print()
    print(table.drop(columns=["padding_free"], errors="ignore").to_string(float_format=lambda x: f"{x:,.3g}"))
    headline = {key.replace(" ", "_").replace(",", ""): value for key, value in {
        "rmsweep_vs_trl": table.get("vs_TRL", {}).get("rmsweep"),
        "rmsweep_vs_plain": table.loc["rmsweep", "tokens_per_second"] / table.loc["plain PyTorch loop",
                                                                                   "tokens_per_second"]
        if {"rmsweep", "plain PyTorch loop"} <= set(results) else None,
        "length_grouping_gain": table.loc["rmsweep", "tokens_per_second"]
        / table.loc["rmsweep, no length grouping", "tokens_per_second"]
        if {"rmsweep", "rmsweep, no length grouping"} <= set(results) else None,
        "padding_free_gain": table.loc["rmsweep, padding-free", "tokens_per_second"]
        / table.loc["rmsweep", "tokens_per_second"] if {"rmsweep", "rmsweep, padding-free"} <= set(results) else None,
        "rmsweep_val_accuracy": table.get("val_accuracy", {}).get("rmsweep"),
        "trl_val_accuracy": table.get("val_accuracy", {}).get("TRL RewardTrainer"),
    }.items() if value is not None}
    print("RESULT " + " ".join(f"{key}={float(value):.3f}" for key, value in headline.items()))
    return json.loads(json.dumps(headline, default=float))


if __name__ == "__main__":
    main()
