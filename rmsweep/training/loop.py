"""The per-worker training loop, read top to bottom like a recipe.

`train_loop_per_worker` is what Ray Train's TorchTrainer runs on each worker; `fit_reward_model` is the
loop itself, which also runs without Ray (tests, debugging) with rank 0 of 1.

Recipe (arXiv 2505.10775): AdamW, linear warmup (20 steps) then constant lr, gradients clipped to norm 1, a
global batch split over workers and gradient-accumulation micro-batches, evaluation on the validation pairs
every `eval_every` steps, each with a checkpoint: the model, plus the optimizer, schedule, step and RNG state
in `trainer_state.pt`, so that a trial whose worker dies resumes at its last evaluation (Ray Train restarts
the worker group and hands the loop its latest checkpoint). Ray Train keeps the best checkpoint and the latest.

A non-finite loss on any rank stops the trial at once with `diverged` set in its last report. Running out of
memory in a one-worker trial whose checkpointing is left to `auto` turns gradient checkpointing on and redoes
the step; out of memory with it on (or off by choice) stops the trial the same way as divergence,
`out_of_memory` naming the model and batch. With several workers the rank that ran out raises that message
(the other ranks wait in a collective, so Ray Train must end the group), and the worker group Ray Train
restarts (one of the trial's `--max-failures`) resumes from the latest evaluation with checkpointing on. For
that, and so that the sweep's later trials of the base model (same batch, same data order) start with it on,
running out of memory without checkpointing on `auto` leaves a file named after the model in the sweep's
`out_of_memory_dir`.

Speed (README, Performance): chosen and rejected in one forward pass; each step's examples sorted by length
and split into micro-batches where padding is least (the same gradient); padding-free packed rows where
attention supports them; bf16 autocast and fused AdamW on a GPU; gradient checkpointing when asked for, or when
a step does not fit without it.
"""
import functools
import itertools
import json
import math
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from rmsweep.data import tokenization
from rmsweep.data import batching
from rmsweep.training import distributed
from rmsweep.model import heads
from rmsweep.model import losses
from rmsweep.model import reward_model
from rmsweep.sweep import storage
from rmsweep.data import token_cache

TRAINER_STATE = "trainer_state.pt"
MAX_GRAD_NORM = 1.0  # transformers' Trainer, TRL and OpenRLHF clip at 1.0 by default: one outlier batch moves less
# What a checkpoint's rmsweep_meta.json records of the trial's config.
META_KEYS = ("model", "model_spec", "rm_type", "lr", "epochs", "bt_variant", "reward_centering", "regression_weights",
             "strategy")


def check_same_across_ranks(values_by_rank: list) -> None:
    """Hyperparameters are sampled once per trial by the searcher; every rank must hold that one sample."""
    if any(values != values_by_rank[0] for values in values_by_rank):
        raise RuntimeError(f"ranks disagree on hyperparameters: {values_by_rank}")


def _scalar_weights(config: dict) -> list | None:
    """Regression RMs become pairwise scorers through a weight vector over their attributes."""
    return config["regression_weights"] if config["rm_type"] == "regression" else None


def _forward(model, sequences: list, pad_id: int, device, padding_free: bool) -> torch.Tensor:
    """Rewards of token-id sequences in one forward pass: packed in one row, or right-padded; in bf16 on a GPU
    (the weights and optimizer stay fp32)."""
    batch = tokenization.pack(sequences, device) if padding_free else dict(zip(
        ("input_ids", "attention_mask"), tokenization.pad(sequences, pad_id, device)))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda"):
        return model(**batch).float()


def _micro_batch_loss(model, config: dict, tokenized: tokenization.Tokenized, indices: list[int], pad_id: int, device,
                      padding_free: bool = False):
    """The RM type's loss on one micro-batch: regression (MSE on ratings), BT, or BNRM (BT + KL)."""
    if config["rm_type"] == "regression":
        outputs = _forward(model, [tokenized.sequences[i] for i in indices], pad_id, device, padding_free)
        targets = torch.tensor([tokenized.targets[i] for i in indices], dtype=torch.float32, device=device)
        return losses.regression_loss(outputs, targets)
    chosen = [tokenized.sequences[i][0] for i in indices]
    rejected = [tokenized.sequences[i][1] for i in indices]
    scores = _forward(model, chosen + rejected, pad_id, device, padding_free)[:, 0]  # one forward pass for both
    margins = torch.tensor([tokenized.targets[i] for i in indices], dtype=scores.dtype, device=device)
    loss = losses.bradley_terry_loss(scores[: len(indices)], scores[len(indices):], margins,
                                     config["bt_variant"], config["reward_centering"])
    if config["rm_type"] == "bnrm":
        loss = loss + heads.KL_WEIGHT * reward_model.unwrap(model).model.score.kl
    return loss


def _accumulate_gradients(model, config: dict, tokenized: tokenization.Tokenized, micro_batches: list, pad_id: int,
                           device, padding_free: bool, per_rank: int, world_size: int) -> tuple[list[float], int, str]:
    """One step's forward and backward passes: (each micro-batch's loss, the real tokens trained on, and "" or
    what ran out of memory, with no losses or tokens then).

    Each micro-batch's mean loss is weighted by its share of the rank's examples (length-grouped micro-batches
    differ in size), and DDP averages the ranks: the gradient is that of the mean loss over the global batch,
    reduced across ranks once per step, on its last micro-batch.
    """
    losses, tokens = [], 0
    try:
        for index, micro_batch in enumerate(micro_batches):
            with distributed.gradient_sync(model, enabled=index == len(micro_batches) - 1):
                loss = _micro_batch_loss(model, config, tokenized, micro_batch, pad_id, device, padding_free)
                (loss * len(micro_batch) / per_rank).backward()
            losses.append(loss.item())
            tokens += _tokens(tokenized, micro_batch)
    except RuntimeError as error:
        if not _is_out_of_memory(error):
            raise
        return [], 0, (f"out of memory: {config['model']}, micro-batch {config['micro_batch_size']} x up to "
                       f"{config['max_length']} tokens (global batch {config['global_batch_size']}, "
                       f"{world_size} worker(s)) on {device}")
    return losses, tokens, ""


def _turn_on_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    base = reward_model.unwrap(model).model
    # transformers 5 renamed it activation checkpointing (the old name warns, and goes in v6); 4.x has the old one.
    if hasattr(base, "activation_checkpointing_enable"):
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _tokens(tokenized: tokenization.Tokenized, indices: list[int]) -> int:
    """Real (non-pad) tokens of these rows: what throughput counts."""
    rows = [tokenized.sequences[i] for i in indices]
    return sum(len(c) + len(r) for c, r in rows) if rows and isinstance(rows[0], tuple) else sum(map(len, rows))


def _is_out_of_memory(error: RuntimeError) -> bool:
    """A GPU's OutOfMemoryError, or the CPU allocator's plain RuntimeError."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def _validation_accuracy(model, validation: tokenization.Tokenized, pad_id, device, rank, world_size, weights) -> float:
    # Every rank scores the same number of pairs (the last ones padded with a repeat, left uncounted): a sharded
    # model gathers its weights in each forward pass, which every rank must join.
    mine = validation.sequences[rank::world_size]
    per_rank = math.ceil(len(validation.sequences) / world_size)
    shard = tokenization.Tokenized(mine + validation.sequences[:1] * (per_rank - len(mine)))
    chosen, rejected = reward_model.score_pairs(reward_model.unwrap(model), shard, pad_id, device)
    chosen, rejected = reward_model.scalar(chosen, weights)[: len(mine)], reward_model.scalar(rejected, weights)[: len(mine)]
    wins, total = distributed.sum_across_ranks(float((chosen > rejected).sum()), float(len(mine)))
    return wins / total


def fit_reward_model(config: dict, report, rank: int = 0, world_size: int = 1, device="cpu",
                     prepare_model=lambda model: model, resume_from: Path | None = None) -> None:
    """Train one reward model; `report(metrics, checkpoint_dir_or_None)` is called at every evaluation (rank 0
    passes the checkpoint). `resume_from`: a checkpoint of this trial to continue from."""
    started = time.perf_counter()
    rm_type = config["rm_type"]
    if world_size > 1:
        gathered = [None] * world_size
        dist.all_gather_object(gathered, (config["lr"], config["epochs"], config["seed"]))
        check_same_across_ranks(gathered)
    torch.manual_seed(config["seed"])

    # Model, tokenizer and data (canonical records, see sources.py), tokenized once per sweep storage.
    tokenizer, model = reward_model.load_reward_model(config["model_spec"], rm_type)
    if resume_from:
        reward_model.load_weights(model, resume_from)
    records = config["data"]
    cache = storage.Location(config["token_cache"]) if config["token_cache"] else None
    # The tokenizer comes from the source alone (every tiny twin shares one): that is what the cache is keyed by.
    key = {"tokenizer": config["model_spec"]["source"], "max_length": config["max_length"]}
    tokenize_train = tokenization.tokenize_ratings if rm_type == "regression" else tokenization.tokenize_pairs
    train = token_cache.load_or_tokenize(
        cache, {**key, "data": config["data_fingerprints"]["train"], "as": tokenize_train.__name__},
        lambda: tokenize_train(tokenizer, records["train"], config["max_length"]))
    validation = token_cache.load_or_tokenize(
        cache, {**key, "data": config["data_fingerprints"]["validation"], "as": "tokenize_pairs"},
        lambda: tokenization.tokenize_pairs(tokenizer, records["validation"], config["max_length"]))
    # "auto": off until a step of this base model runs out of memory (in this trial, or before it in the sweep).
    out_of_memory_dir = storage.Location(config["out_of_memory_dir"]) if config["out_of_memory_dir"] else None
    marker = f"{config['model']}.txt"
    checkpointing = config["gradient_checkpointing"] is True or (
        config["gradient_checkpointing"] == "auto" and out_of_memory_dir is not None
        and out_of_memory_dir.exists(marker))
    if checkpointing:
        _turn_on_gradient_checkpointing(model)
    # Padding-free where attention runs per packed sequence (else length-grouped padded micro-batches).
    padding_free = (reward_model.supports_padding_free(model) if config["padding_free"] == "auto"
                    else config["padding_free"])
    lengths = batching.sequence_lengths(train) if config["length_grouping"] else None
    model = prepare_model(model.to(device))
    pad_id, weights = tokenizer.pad_token_id, _scalar_weights(config)

    # Optimizer and schedule: linear warmup, then constant. One fused kernel per step on a GPU.
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], fused=torch.device(device).type == "cuda")
    warmup = max(1, config["warmup_steps"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    steps_per_epoch = len(train.sequences) // config["global_batch_size"]
    total_steps = config["epochs"] * steps_per_epoch
    per_rank = config["global_batch_size"] // world_size  # examples per rank and step

    step, best_accuracy, recent_losses = 0, float("-inf"), []
    if resume_from:
        state = torch.load(Path(resume_from) / TRAINER_STATE, weights_only=True)
        distributed.load_optimizer_state(model, optimizer, state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state:  # BNRM draws its noise on the GPU when it trains there
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        step, best_accuracy = state["step"], state["best_accuracy"]
    resumed_from_step = step
    if resume_from and step >= total_steps:  # the interrupted run had trained to the end: report that end again
        saved = json.loads((Path(resume_from) / reward_model.META_FILE).read_text())
        metrics = {key: value for key, value in saved.items() if key not in META_KEYS}
        report({**metrics, "resumed_from_step": step}, resume_from if rank == 0 else None)
        return
    tokens, training_seconds = 0, 0.0  # since the last evaluation, for throughput
    startup_seconds, eval_seconds = time.perf_counter() - started, 0.0  # loading, tokenizing, wrapping; scoring
    # Every step of every epoch in order (the order is fixed by the seed); a resumed trial skips those done.
    all_steps = ((epoch, micro_batches) for epoch in range(config["epochs"])
                 for micro_batches in batching.rank_micro_batches(
                     len(train.sequences), config["global_batch_size"], config["micro_batch_size"], rank, world_size,
                     config["seed"], epoch, lengths))
    for epoch, micro_batches in itertools.islice(all_steps, step, None):
        step_started = time.perf_counter()
        model.train()
        accumulate = functools.partial(_accumulate_gradients, model, config, train, micro_batches, pad_id, device,
                                       padding_free, per_rank, world_size)
        step_losses, step_tokens, out_of_memory = accumulate()
        recoverable = bool(out_of_memory) and config["gradient_checkpointing"] == "auto" and not checkpointing
        if recoverable and out_of_memory_dir is not None:
            out_of_memory_dir.write_text(marker, out_of_memory)
        if out_of_memory and world_size > 1:  # the other ranks wait in a collective this one left
            raise RuntimeError(out_of_memory)  # Ray Train ends the group, and restarts it while failures remain
        if recoverable:
            # What did not fit may fit with activations recomputed: the step again, from no gradients.
            optimizer.zero_grad(set_to_none=True)
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()
            _turn_on_gradient_checkpointing(model)
            checkpointing = True
            step_losses, step_tokens, out_of_memory = accumulate()
        recent_losses += step_losses
        tokens += step_tokens
        # Every rank must stop together (or the others wait forever in the next all-reduce).
        diverged = distributed.sum_across_ranks(float(not all(map(math.isfinite, step_losses))))[0] > 0
        stopped = diverged or bool(out_of_memory)
        if not stopped:
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        training_seconds += time.perf_counter() - step_started

        if step % config["eval_every"] and step != total_steps and not stopped:
            continue
        # A diverged model is not evaluated: its scores are NaN. A stopped trial reports its best so far and ends.
        eval_started = time.perf_counter()
        accuracy = (max(best_accuracy, 0.0) if stopped else
                    _validation_accuracy(model, validation, pad_id, device, rank, world_size, weights))
        eval_seconds += time.perf_counter() - eval_started
        all_tokens = distributed.sum_across_ranks(tokens)[0]
        metrics = {
            "step": step, "total_steps": total_steps, "epoch": epoch + 1, "val_accuracy": accuracy,
            "train_loss": sum(recent_losses) / len(recent_losses) if recent_losses else float("nan"),
            "train_truncated": train.truncated, "train_dropped": train.dropped,
            "validation_dropped": validation.dropped, "diverged": diverged, "out_of_memory": out_of_memory,
            "tokens_per_second": all_tokens / training_seconds, "resumed_from_step": resumed_from_step,
            "startup_seconds": startup_seconds, "eval_seconds": eval_seconds, "padding_free": padding_free,
            "gradient_checkpointing": checkpointing,
            "loop_seconds": time.perf_counter() - started,  # the trial's wall time less this is Ray's overhead
        }
        recent_losses, tokens, training_seconds = [], 0, 0.0
        if stopped:
            report({**metrics, "best_val_accuracy": accuracy}, None)
            return
        best_accuracy = max(best_accuracy, accuracy)
        metrics["best_val_accuracy"] = best_accuracy
        # Every rank joins: a sharded model's weights and optimizer state are gathered to rank 0.
        weights_gathered = distributed.full_state_dict(model)
        optimizer_state = distributed.full_optimizer_state(model, optimizer)
        if rank == 0:
            with tempfile.TemporaryDirectory() as checkpoint_dir:
                meta = {key: config[key] for key in META_KEYS}
                reward_model.save_reward_model(model, tokenizer, checkpoint_dir, {**meta, **metrics},
                                           weights_gathered)
                rng = {"rng": torch.get_rng_state()}
                if torch.device(device).type == "cuda":
                    rng["cuda_rng"] = torch.cuda.get_rng_state(device)
                torch.save({"optimizer": optimizer_state, "schedule": schedule.state_dict(), "step": step,
                            "best_accuracy": best_accuracy, **rng}, Path(checkpoint_dir) / TRAINER_STATE)
                report(metrics, checkpoint_dir)
        else:
            report(metrics, None)


def train_loop_per_worker(config: dict) -> None:
    """Entry point for `ray.train.torch.TorchTrainer`."""
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    world_size, device = context.get_world_size(), ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives run on the current device
    # Which nodes the trial's workers ran on, for the ledger: every rank's, gathered once.
    nodes = [ray.get_runtime_context().get_node_id()[:8]] * world_size
    if world_size > 1:
        dist.all_gather_object(nodes, nodes[0])

    def report_to_ray(metrics, checkpoint_dir):
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report({**metrics, "nodes": " ".join(sorted(set(nodes)))}, checkpoint=checkpoint)

    if isinstance(config["data"], ray.ObjectRef):  # the sweep puts the records in the object store once
        config = {**config, "data": ray.get(config["data"])}
    prepare = distributed.shard if config["strategy"] == "fsdp" else ray.train.torch.prepare_model
    checkpoint = ray.train.get_checkpoint()  # set when Ray Train restarts this trial after a worker failed
    with checkpoint.as_directory() if checkpoint else nullcontext() as resume_from:
        fit_reward_model(config, report_to_ray, rank=context.get_world_rank(), world_size=world_size,
                         device=device, prepare_model=prepare, resume_from=resume_from)
