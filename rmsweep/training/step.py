"""One optimizer step's forward and backward passes, and what happens when memory runs out.

Chosen and rejected go through the model in one forward pass; each micro-batch's mean loss is weighted by its
share of the rank's examples (length-grouped micro-batches differ in size), and DDP averages the ranks, so the
gradient is that of the mean loss over the global batch, reduced across ranks once per step.
"""
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from rmsweep.config import TrainConfig
from rmsweep.data import tokenization
from rmsweep.model import heads, losses, reward_model
from rmsweep.training import distributed


class OutOfMemory(RuntimeError):
    """A step ran out of memory; the message names the model and batch."""


@dataclass
class Timers:
    """Where a trial's time goes: start-up (loading, tokenizing, wrapping), training since the last evaluation
    (for throughput), and validation scoring."""
    started: float
    startup_seconds: float = 0.0
    training_seconds: float = 0.0
    eval_seconds: float = 0.0
    tokens: int = 0  # real tokens trained on since the last evaluation

    @contextmanager
    def measure(self, what: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, f"{what}_seconds", getattr(self, f"{what}_seconds") + time.perf_counter() - began)

    def since_start(self) -> float:
        return time.perf_counter() - self.started


def forward(model, sequences: list, pad_id: int, device, padding_free: bool) -> torch.Tensor:
    """Rewards of token-id sequences in one forward pass: packed in one row, or right-padded; in bf16 on a GPU
    (the weights and optimizer stay fp32)."""
    batch = tokenization.pack(sequences, device) if padding_free else dict(zip(
        ("input_ids", "attention_mask"), tokenization.pad(sequences, pad_id, device)))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda"):
        return model(**batch).float()


def micro_batch_loss(model, config: TrainConfig, tokenized: tokenization.Tokenized, indices: list[int], pad_id: int,
                     device, padding_free: bool = False) -> torch.Tensor:
    """The RM type's loss on one micro-batch: regression (MSE on ratings), BT, or BNRM (BT + KL)."""
    if config.rm_type == "regression":
        outputs = forward(model, [tokenized.sequences[i] for i in indices], pad_id, device, padding_free)
        targets = torch.tensor([tokenized.targets[i] for i in indices], dtype=torch.float32, device=device)
        return losses.regression_loss(outputs, targets)
    chosen = [tokenized.sequences[i][0] for i in indices]
    rejected = [tokenized.sequences[i][1] for i in indices]
    scores = forward(model, chosen + rejected, pad_id, device, padding_free)[:, 0]
    margins = torch.tensor([tokenized.targets[i] for i in indices], dtype=scores.dtype, device=device)
    loss = losses.bradley_terry_loss(scores[: len(indices)], scores[len(indices):], margins, config.bt_variant,
                                     config.reward_centering)
    if config.rm_type == "bnrm":
        loss = loss + heads.KL_WEIGHT * reward_model.unwrap(model).model.score.kl
    return loss


def real_tokens(tokenized: tokenization.Tokenized, indices: list[int]) -> int:
    """Real (non-pad) tokens of these rows: what throughput counts."""
    rows = [tokenized.sequences[i] for i in indices]
    return sum(len(c) + len(r) for c, r in rows) if rows and isinstance(rows[0], tuple) else sum(map(len, rows))


def accumulate_gradients(model, config: TrainConfig, tokenized, micro_batches: list, pad_id: int, device,
                         padding_free: bool, world_size: int) -> tuple[list[float], int]:
    """Forward and backward over one step's micro-batches: (each micro-batch's loss, real tokens). Raises
    OutOfMemory naming the model and batch."""
    per_rank = config.training.global_batch_size // world_size
    step_losses, tokens = [], 0
    try:
        for index, micro_batch in enumerate(micro_batches):
            with distributed.gradient_sync(model, enabled=index == len(micro_batches) - 1):
                loss = micro_batch_loss(model, config, tokenized, micro_batch, pad_id, device, padding_free)
                (loss * len(micro_batch) / per_rank).backward()
            step_losses.append(loss.item())
            tokens += real_tokens(tokenized, micro_batch)
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        training = config.training
        raise OutOfMemory(f"out of memory: {config.model}, micro-batch {training.micro_batch_size} x up to "
                          f"{training.max_length} tokens (global batch {training.global_batch_size}, "
                          f"{world_size} worker(s)) on {device}") from None
    return step_losses, tokens


def is_out_of_memory(error: RuntimeError) -> bool:
    """A GPU's OutOfMemoryError, or the CPU allocator's plain RuntimeError."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def turn_on_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass: less memory, more compute."""
    base = reward_model.unwrap(model).model
    # transformers 5 renamed it activation checkpointing (the old name warns, and goes in v6); 4.x has the old one.
    if hasattr(base, "activation_checkpointing_enable"):
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
