"""Data parallelism inside one trial: DDP replicas or FSDP shards, and the collectives the training loop needs.

FSDP here is PyTorch's `fully_shard` (FSDP2): every decoder layer, then the whole reward model, is sharded
over the trial's workers, so a model whose weights, gradients and AdamW moments do not fit one GPU trains on
several. Ray's `prepare_model` offers only the older FSDP wrapper and only on GPUs; `fully_shard` also runs
on CPU workers over gloo, which is how the tests exercise it. DDP keeps using Ray's `prepare_model`.
"""
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard


def is_sharded(model) -> bool:
    return isinstance(model, FSDPModule)


def shard(model):
    """FSDP2 over the default process group: each transformer block (the classes transformers names in
    `_no_split_modules`, as accelerate's FSDP wrapping uses them), then the root; in place."""
    blocks = set(getattr(model.model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)
    return model


@contextmanager
def gradient_sync(model, enabled: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on micro-batches before a step's last."""
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)
        yield
    elif not enabled and hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    else:
        yield


def full_state_dict(model) -> dict | None:
    """The whole model's weights on rank 0 when sharded (every rank must call this: it gathers the shards);
    None when each rank already holds them all."""
    if not is_sharded(model):
        return None
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {name.removeprefix("model."): tensor for name, tensor in state.items()}


def full_optimizer_state(model, optimizer) -> dict:
    """The optimizer's whole state, keyed by parameter name (so a sharded run can load it back); every rank
    must call this when sharded."""
    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model, optimizer, state: dict) -> None:
    """Load what `full_optimizer_state` returned on rank 0 (and every rank reads from the checkpoint)."""
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def sum_across_ranks(*counts: float) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return list(counts)
    # NCCL reduces only GPU tensors; gloo takes CPU ones.
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    totals = torch.tensor(counts, dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    return totals.tolist()
