"""One optimizer step's forward and backward passes, and what happens when memory runs out.

Chosen and rejected go through the model in one forward pass (their prompt computed once, where the attention
takes custom masks: `data.packing`); each micro-batch's mean loss is weighted by its
share of the rank's examples (length-grouped micro-batches differ in size), and DDP averages the ranks, so the
gradient is that of the mean loss over the global batch, reduced across ranks once per step.
"""
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from rmsweep.config import TrainConfig
from rmsweep.data import packing, tokenization
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


LAYOUTS = ("padded", "padding_free", "shared_prompt", "packed_shared_prompt")
SHARED_PROMPT_LAYOUTS = ("shared_prompt", "packed_shared_prompt")
PACKED_LAYOUTS = ("padding_free", "packed_shared_prompt")


def model_inputs(examples: list, pad_id: int, device, layout: str) -> dict:
    """One forward pass's inputs for sequences or (chosen, rejected) pairs, in a layout of LAYOUTS: right-padded
    rows, one padding-free row (flash-attention, FlexAttention), pairs whose prompt is computed once (padded rows
    and a key/value cache), or both (one padding-free row, FlexAttention); sequences: padded or packed."""
    pairs = isinstance(examples[0], tuple)
    if layout == "shared_prompt" and pairs:
        return packing.share_prompts(examples, pad_id, device).model_inputs()
    if layout == "packed_shared_prompt" and pairs:
        return packing.pack_shared_prompts(examples, device)
    sequences = [chosen for chosen, _ in examples] + [rejected for _, rejected in examples] if pairs else examples
    if layout in PACKED_LAYOUTS:
        return tokenization.pack(sequences, device)
    return dict(zip(("input_ids", "attention_mask"), tokenization.pad(sequences, pad_id, device)))


def forward(model, examples: list, pad_id: int, device, layout: str) -> torch.Tensor:
    """Outputs per sequence (pairs: every chosen, then every rejected) in one forward pass, in bf16 autocast on a
    GPU."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda"):
        return model(**model_inputs(examples, pad_id, device, layout)).float()


def micro_batch_loss(model, config: TrainConfig, tokenized: tokenization.Tokenized, indices: list[int], pad_id: int,
                     device, layout: str = "padded") -> torch.Tensor:
    """The RM type's loss on one micro-batch: regression (MSE on ratings), BT, or BNRM (BT + KL)."""
    outputs = forward(model, [tokenized.sequences[i] for i in indices], pad_id, device, layout)
    if config.rm_type == "regression":
        targets = torch.tensor([tokenized.targets[i] for i in indices], dtype=torch.float32, device=device)
        return losses.regression_loss(outputs, targets)
    scores = outputs[:, 0]
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
                         layout: str, world_size: int) -> tuple[list[float], int]:
    """Forward and backward over one step's micro-batches: (each micro-batch's loss, real tokens). Raises
    OutOfMemory naming the model and batch."""
    per_rank = config.training.global_batch_size // world_size
    step_losses, tokens = [], 0
    try:
        for index, micro_batch in enumerate(micro_batches):
            with distributed.gradient_sync(model, enabled=index == len(micro_batches) - 1):
                loss = micro_batch_loss(model, config, tokenized, micro_batch, pad_id, device, layout)
                (loss * len(micro_batch) / per_rank).backward()
            step_losses.append(loss.item())
            tokens += real_tokens(tokenized, micro_batch)
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        training = config.training
        size = (f"{config.tokens_per_micro_batch} tokens" if config.tokens_per_micro_batch
                else f"{training.micro_batch_size} x up to {training.max_length} tokens")
        raise OutOfMemory(f"out of memory: {config.model}, micro-batch {size} (global batch "
                          f"{training.global_batch_size}, {world_size} worker(s)) on {device}") from None
    return step_losses, tokens


def is_out_of_memory(error: RuntimeError) -> bool:
    """A GPU's OutOfMemoryError, or the CPU allocator's plain RuntimeError."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def apply_liger_kernels(model) -> None:
    """Liger's kernels in the model's norms, MLP and rotary embeddings, where Liger knows its architecture (it
    logs the ones it does not); its cross-entropy kernels stay off: a reward model has no language-model loss."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=reward_model.unwrap(model).model, cross_entropy=False,
                                    fused_linear_cross_entropy=False)


def turn_on_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass: less memory, more compute."""
    base = reward_model.unwrap(model).model
    # transformers 5 renamed it activation checkpointing (the old name warns, and goes in v6); 4.x has the old one.
    if hasattr(base, "activation_checkpointing_enable"):
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
