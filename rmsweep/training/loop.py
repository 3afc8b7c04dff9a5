"""The per-worker training loop, as a recipe: setup -> (train step -> evaluate -> save checkpoint) -> end.

`train_loop_per_worker` is what Ray Train's TorchTrainer runs on each worker; `fit_reward_model` is the loop,
which also runs without Ray (tests, benchmarks) as rank 0 of 1.

Recipe (arXiv 2505.10775): AdamW, linear warmup then constant lr, gradients clipped to norm 1, a global batch
split over workers and gradient-accumulation micro-batches, validation accuracy every `eval_every` steps, each
evaluation with a checkpoint that holds the optimizer, schedule, step and RNG state too, so a trial whose
worker dies resumes at its last evaluation (Ray Train hands the loop its latest checkpoint).

A non-finite loss on any rank stops the trial with `diverged` in its last report. Out of memory: see
`handle_out_of_memory`.
"""
import functools
import itertools
import json
import math
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from rmsweep.config import AUTO, TrainConfig
from rmsweep.data import batching, token_cache, tokenization
from rmsweep.model import masks, reward_model
from rmsweep.sweep import storage
from rmsweep.training import distributed, step

TRAINER_STATE = "trainer_state.pt"
MAX_GRAD_NORM = 1.0  # transformers' Trainer, TRL and OpenRLHF clip at 1.0 by default: one outlier batch moves less


@dataclass
class Trial:
    """What setup builds and the step, evaluation and checkpoint read."""
    config: TrainConfig
    rank: int
    world_size: int
    device: object
    tokenizer: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    train: tokenization.Tokenized
    validation: tokenization.Tokenized
    layout: str  # step.LAYOUTS
    checkpointing: bool
    out_of_memory_marker: storage.Location | None  # the folder; the file is named after the model
    timers: step.Timers
    total_steps: int
    step: int = 0
    best_accuracy: float = float("-inf")
    tokens_trained: int = 0  # real tokens over every rank and step so far (the curve's x for throughput)
    resumed_from_step: int = 0
    recent_losses: list = field(default_factory=list)
    prompts: np.ndarray | None = None  # per training row, the prompt its pass computes once (prompt_lengths)


def check_same_across_ranks(values_by_rank: list) -> None:
    """Hyperparameters are sampled once per trial by the searcher; every rank must hold that one sample."""
    if any(values != values_by_rank[0] for values in values_by_rank):
        raise RuntimeError(f"ranks disagree on hyperparameters: {values_by_rank}")


# ---- setup ----------------------------------------------------------------------------------------------------

def tokenized_splits(config: TrainConfig, tokenizer, records: dict):
    """(train, validation) token ids, read from the sweep's token cache when a trial wrote them before."""
    cache = storage.Location(config.token_cache) if config.token_cache else None
    # The tokenizer comes from the source and its revision alone (every tiny twin shares one), its chat format from
    # whether the base model has a template: that is what the cache is keyed by.
    spec = config.model_spec
    key = {"tokenizer": spec.source, "revision": spec.revision, "chat_template": spec.chat_template,
           "max_length": config.training.max_length}
    tokenize_train = (tokenization.tokenize_ratings if config.rm_type == "regression"
                      else tokenization.tokenize_pairs)
    train = token_cache.load_or_tokenize(
        cache, {**key, "data": config.fingerprint("train"), "as": tokenize_train.__name__},
        lambda: tokenize_train(tokenizer, records["train"], config.training.max_length))
    validation = token_cache.load_or_tokenize(
        cache, {**key, "data": config.fingerprint("validation"), "as": "tokenize_pairs"},
        lambda: tokenization.tokenize_pairs(tokenizer, records["validation"], config.training.max_length))
    return train, validation


def warmup_then_constant(optimizer, warmup_steps: int):
    # Not transformers' get_constant_schedule_with_warmup: that one trains its first step at lr 0.
    warmup = max(1, warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda index: min(1.0, (index + 1) / warmup))


def setup(config: TrainConfig, records: dict, rank: int, world_size: int, device, prepare_model,
          resume_from: Path | None) -> Trial:
    """Model, data, optimizer and schedule; the state of `resume_from` restored."""
    timers = step.Timers(started=time.perf_counter())
    if world_size > 1:
        gathered = [None] * world_size
        dist.all_gather_object(gathered, (config.lr, config.epochs, config.seed))
        check_same_across_ranks(gathered)
    if config.attention == "flex_attention" and torch.device(device).type != "cuda":
        raise ValueError(f"{config.model}: flex_attention trains on GPUs only (PyTorch has no backward pass for it "
                         "on CPUs)")
    torch.manual_seed(config.seed)
    tokenizer, model = reward_model.load_reward_model(config.model_spec, config.rm_type, config.attention)
    if resume_from:
        reward_model.load_weights(model, resume_from)
    train, validation = tokenized_splits(config, tokenizer, records)
    marker = storage.Location(config.out_of_memory_dir) if config.out_of_memory_dir else None
    # auto: off until a step of this base model runs out of memory (in this trial, or before it in the sweep).
    checkpointing = config.gradient_checkpointing is True or (
        config.gradient_checkpointing == AUTO and marker is not None and marker.exists(f"{config.model}.txt"))
    if checkpointing:
        step.turn_on_gradient_checkpointing(model)
    layout = choose_layout(config, model, checkpointing, device)
    if torch.device(device).type == "cuda":
        # cuDNN's attention builds a kernel plan for every new shape, and length-varying micro-batches bring new
        # shapes all the time; the other SDPA kernels take any shape (docs/performance.md has the measurement).
        torch.backends.cuda.enable_cudnn_sdp(False)
    if config.precision == "bf16" and torch.device(device).type == "cuda":
        model = model.to(torch.bfloat16)
    if config.liger:
        step.apply_liger_kernels(model)
    if config.compile:  # in place: the state dict's keys, which checkpoints hold, stay the model's own
        model.model.base_model.compile(dynamic=True)
    model = prepare_model(model.to(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, fused=torch.device(device).type == "cuda")
    trial = Trial(config, rank, world_size, device, tokenizer, model, optimizer,
                  warmup_then_constant(optimizer, config.training.warmup_steps), train, validation, layout,
                  checkpointing, marker, timers,
                  total_steps=config.epochs * (len(train.sequences) // config.training.global_batch_size))
    set_prompts(trial)
    if resume_from:
        restore(trial, Path(resume_from))
    trial.timers.startup_seconds = trial.timers.since_start()
    return trial


def choose_layout(config: TrainConfig, model: reward_model.RewardModel, checkpointing: bool, device) -> str:
    """How a micro-batch's examples are laid out (`step.LAYOUTS`): padding-free where asked or where
    flash-attention or FlexAttention runs it, its pairs sharing their prompt in the packed row where FlexAttention
    takes their block masks (unless --shared-prompt off); else pairs sharing their prompt where the attention takes
    custom masks, no gradient checkpointing turns off the key/value cache it needs, and the model is not sharded
    (FSDP frees a block's weights after its backward, and a shared prompt runs each block twice) (auto: on CPUs
    only, where it was measured to pay; on a GPU its right-padded prompt rows cost more than the prompt saves,
    docs/performance.md), else padded."""
    if config.padding_free is True or (config.padding_free == AUTO and reward_model.supports_padding_free(model)):
        shares = config.shared_prompt is not False and reward_model.takes_block_masks(model)
        return "packed_shared_prompt" if shares else "padding_free"
    takes_masks = masks.takes_custom_masks(model.model.config)
    if config.shared_prompt is True and not takes_masks:
        raise ValueError(f"{config.model}: its {model.model.config._attn_implementation} attention takes no "
                         "custom mask, so chosen and rejected cannot share the prompt (use --shared-prompt auto)")
    wanted = config.shared_prompt is True or (config.shared_prompt == AUTO and torch.device(device).type == "cpu")
    possible = takes_masks and not checkpointing and config.strategy != "fsdp"
    return "shared_prompt" if wanted and possible else "padded"


def set_prompts(trial: Trial) -> None:
    """The training rows' shared prompt lengths, found once: none unless the layout shares prompts."""
    shared = trial.layout in step.SHARED_PROMPT_LAYOUTS
    trial.prompts = (batching.prompt_lengths(trial.train) if shared
                     else np.zeros(len(trial.train.sequences), dtype=int))


def two_sequence_pairs(trial: Trial) -> int:
    """Training pairs computed as two sequences: all, unless they share a prompt; then those sharing no token."""
    pairs = trial.train.sequences
    if not pairs or not isinstance(pairs[0], tuple):
        return 0
    return int((trial.prompts == 0).sum())


def restore(trial: Trial, checkpoint: Path) -> None:
    state = torch.load(checkpoint / TRAINER_STATE, weights_only=True)
    distributed.load_optimizer_state(trial.model, trial.optimizer, state["optimizer"])
    trial.schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state:  # BNRM draws its noise on the GPU when it trains there
        torch.cuda.set_rng_state(state["cuda_rng"], trial.device)
    trial.step = trial.resumed_from_step = state["step"]
    trial.best_accuracy = state["best_accuracy"]
    trial.tokens_trained = state.get("tokens_trained", 0)  # absent in checkpoints of older rmsweep


def remaining_steps(trial: Trial):
    """(epoch, this rank's micro-batches) for every step not yet taken; the order is fixed by the seed."""
    config, training = trial.config, trial.config.training
    lengths = shapes = None
    packed = trial.layout in step.PACKED_LAYOUTS
    units = functools.cache(lambda: batching.unit_lengths(trial.train, trial.prompts))  # one pass over the pairs
    if config.length_grouping or config.tokens_per_micro_batch:
        lengths = units() if trial.layout in step.SHARED_PROMPT_LAYOUTS else batching.sequence_lengths(trial.train)
    if config.tokens_per_micro_batch:
        shapes = units() if packed else batching.pass_shapes(trial.train, trial.prompts)
    every_step = ((epoch, micro_batches) for epoch in range(config.epochs)
                  for micro_batches in batching.rank_micro_batches(
                      len(trial.train.sequences), training.global_batch_size, training.micro_batch_size, trial.rank,
                      trial.world_size, config.seed, epoch, lengths, config.tokens_per_micro_batch, shapes,
                      batching.packed_tokens if packed else batching.pass_tokens))
    return itertools.islice(every_step, trial.step, None)


# ---- one step -------------------------------------------------------------------------------------------------

def handle_out_of_memory(trial: Trial, error: step.OutOfMemory, redo) -> tuple[list, int, str]:
    """The policy for a step that ran out of memory: (losses, tokens, "" or why the trial stops).

    With checkpointing left to auto and off, the model's marker is written (its later trials, and a restarted
    worker group, start with checkpointing on). Several workers: raise, since the other ranks wait in a collective
    this one left (Ray Train ends the group and restarts it). One worker: turn checkpointing on and redo the step
    from no gradients. Otherwise the trial stops, its report naming the model and batch.
    """
    recoverable = trial.config.gradient_checkpointing == AUTO and not trial.checkpointing
    if recoverable and trial.out_of_memory_marker is not None:
        trial.out_of_memory_marker.write_text(f"{trial.config.model}.txt", str(error))
    if trial.world_size > 1:
        raise error
    if not recoverable:
        return [], 0, str(error)
    trial.optimizer.zero_grad(set_to_none=True)
    if torch.device(trial.device).type == "cuda":
        torch.cuda.empty_cache()
    step.turn_on_gradient_checkpointing(trial.model)
    trial.checkpointing = True
    trial.layout = choose_layout(trial.config, reward_model.unwrap(trial.model), True, trial.device)
    set_prompts(trial)
    try:
        return *redo(), ""
    except step.OutOfMemory as again:
        return [], 0, str(again)


def train_step(trial: Trial, micro_batches: list) -> tuple[bool, str]:
    """One optimizer step: (diverged on any rank, "" or the out-of-memory message that stops the trial)."""
    with trial.timers.measure("training"):
        trial.model.train()

        def passes():
            return step.accumulate_gradients(trial.model, trial.config, trial.train, micro_batches,
                                             trial.tokenizer.pad_token_id, trial.device, trial.layout,
                                             trial.world_size)

        try:
            losses, tokens, out_of_memory = *passes(), ""
        except step.OutOfMemory as error:
            losses, tokens, out_of_memory = handle_out_of_memory(trial, error, passes)
        trial.recent_losses += losses
        trial.timers.tokens += tokens
        # Every rank must stop together (or the others wait forever in the next all-reduce).
        diverged = distributed.sum_across_ranks(float(not all(map(math.isfinite, losses))))[0] > 0
        if not (diverged or out_of_memory):
            torch.nn.utils.clip_grad_norm_(trial.model.parameters(), MAX_GRAD_NORM)
            trial.optimizer.step()
            trial.schedule.step()
        trial.optimizer.zero_grad(set_to_none=True)
        trial.step += 1
    return diverged, out_of_memory


# ---- evaluate and checkpoint ----------------------------------------------------------------------------------

def validation_accuracy(trial: Trial) -> float:
    """Share of validation pairs whose chosen response gets the higher reward, over every rank's shard."""
    # Every rank scores the same number of pairs (the last padded with a repeat, left uncounted): a sharded model
    # gathers its weights in each forward pass, which every rank must join.
    validation, world_size = trial.validation, trial.world_size
    mine = validation.sequences[trial.rank::world_size]
    per_rank = math.ceil(len(validation.sequences) / world_size)
    shard = tokenization.Tokenized(mine + validation.sequences[:1] * (per_rank - len(mine)))
    weights = trial.config.regression_weights if trial.config.rm_type == "regression" else None
    chosen, rejected = reward_model.score_pairs(reward_model.unwrap(trial.model), shard,
                                                trial.tokenizer.pad_token_id, trial.device)
    chosen = reward_model.scalar(chosen, weights)[: len(mine)]
    rejected = reward_model.scalar(rejected, weights)[: len(mine)]
    wins, total = distributed.sum_across_ranks(float((chosen > rejected).sum()), float(len(mine)))
    return wins / total


def evaluate(trial: Trial, epoch: int, diverged: bool, out_of_memory: str) -> dict:
    """The evaluation's metrics. A stopped trial is not scored (a diverged model's scores are NaN): it reports its
    best so far."""
    timers = trial.timers
    with timers.measure("eval"):
        stopped = diverged or bool(out_of_memory)
        accuracy = max(trial.best_accuracy, 0.0) if stopped else validation_accuracy(trial)
    if not stopped:
        trial.best_accuracy = max(trial.best_accuracy, accuracy)
    tokens = int(distributed.sum_across_ranks(timers.tokens)[0])
    trial.tokens_trained += tokens
    metrics = {
        "step": trial.step, "total_steps": trial.total_steps, "epoch": epoch + 1, "val_accuracy": accuracy,
        "best_val_accuracy": accuracy if stopped else trial.best_accuracy,
        "train_loss": sum(trial.recent_losses) / len(trial.recent_losses) if trial.recent_losses else float("nan"),
        "train_truncated": trial.train.truncated, "train_dropped": trial.train.dropped,
        "validation_dropped": trial.validation.dropped, "diverged": diverged, "out_of_memory": out_of_memory,
        "tokens_per_second": tokens / timers.training_seconds, "tokens_trained": trial.tokens_trained,
        "resumed_from_step": trial.resumed_from_step, "startup_seconds": timers.startup_seconds,
        "eval_seconds": timers.eval_seconds, "layout": trial.layout,
        "two_sequence_pairs": two_sequence_pairs(trial),
        "gradient_checkpointing": trial.checkpointing,
        "loop_seconds": timers.since_start(),  # the trial's wall time less this is Ray's overhead
    }
    trial.recent_losses, timers.tokens, timers.training_seconds = [], 0, 0.0
    return metrics


def save_checkpoint(trial: Trial, metrics: dict, report) -> None:
    """Report the metrics with a checkpoint (rank 0): weights, tokenizer, and the state to resume from."""
    # Every rank joins: a sharded model's weights and optimizer state are gathered to rank 0.
    weights = distributed.full_state_dict(trial.model)
    optimizer_state = distributed.full_optimizer_state(trial.model, trial.optimizer)
    if trial.rank != 0:
        report(metrics, None)
        return
    with tempfile.TemporaryDirectory() as directory:
        reward_model.save_reward_model(trial.model, trial.tokenizer, directory,
                                       {**trial.config.checkpoint_meta(), **metrics}, weights)
        rng = {"rng": torch.get_rng_state()}
        if torch.device(trial.device).type == "cuda":
            rng["cuda_rng"] = torch.cuda.get_rng_state(trial.device)
        torch.save({"optimizer": optimizer_state, "schedule": trial.schedule.state_dict(), "step": trial.step,
                    "best_accuracy": trial.best_accuracy, "tokens_trained": trial.tokens_trained, **rng},
                   Path(directory) / TRAINER_STATE)
        report(metrics, directory)


def report_end_again(trial: Trial, checkpoint: Path, report) -> None:
    """A trial interrupted after its last step reports that end again, from its checkpoint."""
    saved = json.loads((checkpoint / reward_model.META_FILE).read_text())
    meta = trial.config.checkpoint_meta()
    metrics = {key: value for key, value in saved.items() if key not in meta}
    report({**metrics, "resumed_from_step": trial.step}, checkpoint if trial.rank == 0 else None)


# ---- the recipe -----------------------------------------------------------------------------------------------

def fit_reward_model(config: TrainConfig, records: dict, report, rank: int = 0, world_size: int = 1, device="cpu",
                     prepare_model=lambda model: model, resume_from: Path | None = None) -> None:
    """Train one reward model on `records` ({"train", "validation"}: canonical records); `report(metrics,
    checkpoint_dir_or_None)` at every evaluation. `resume_from`: a checkpoint of this trial to continue from."""
    trial = setup(config, records, rank, world_size, device, prepare_model, resume_from)
    if trial.step >= trial.total_steps:
        report_end_again(trial, Path(resume_from), report)
        return
    for epoch, micro_batches in remaining_steps(trial):
        diverged, out_of_memory = train_step(trial, micro_batches)
        stopped = diverged or bool(out_of_memory)
        if trial.step % config.training.eval_every and trial.step != trial.total_steps and not stopped:
            continue
        metrics = evaluate(trial, epoch, diverged, out_of_memory)
        if stopped:
            report(metrics, None)
            return
        save_checkpoint(trial, metrics, report)


def train_loop_per_worker(loop_config: dict) -> None:
    """Entry point for `ray.train.torch.TorchTrainer`: {"config": TrainConfig, "data": records or their ref}."""
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

    config, records = loop_config["config"], loop_config["data"]
    if isinstance(records, ray.ObjectRef):  # the sweep puts the records in the object store once
        records = ray.get(records)
    prepare = distributed.shard if config.strategy == "fsdp" else ray.train.torch.prepare_model
    checkpoint = ray.train.get_checkpoint()  # set when Ray Train restarts this trial after a worker failed
    with checkpoint.as_directory() if checkpoint else nullcontext() as resume_from:
        fit_reward_model(config, records, report_to_ray, rank=context.get_world_rank(), world_size=world_size,
                         device=device, prepare_model=prepare, resume_from=resume_from)
