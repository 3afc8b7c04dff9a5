"""Where each trial runs: a worker group sized per base model, checked against the cluster before any trial.

`--workers-per-trial` and `--gpus-per-worker` given: every trial gets them. Left to `auto`:
- a cluster without GPUs: one CPU worker per trial (tiny twins, CPU clusters);
- a cluster with GPUs: one GPU per worker, and as many workers as the model's training state needs:
  parameters x 16 bytes (fp32 weights and gradients, AdamW's two moments) x 1.25 (activations, buffers),
  divided by `--gpu-memory-gb`, rounded up to a power of two. When one GPU cannot hold that state the
  workers shard it with FSDP; otherwise they replicate it with DDP. Gradient checkpointing (`auto`) is turned
  on where that state and one micro-batch's activations (estimated from the model's layers and width, when its
  config could be read) would take more than 90% of each GPU; without the model's shape, where the state alone
  takes more than half. A trial still turns it on itself when a step runs out of memory (see training/loop.py).
Tiny twins are sized as what they are (well under a million parameters), not as the model they stand in for.

The cluster is what is running now plus, on an autoscaling cluster, every node type the autoscaler may
start (as Ray Data reads it), so a request that fits only nodes not yet started still passes.
"""
import math
from dataclasses import asdict, dataclass

TRAINING_BYTES_PER_PARAMETER = 16
HEADROOM = 1.25
STRATEGIES = ("auto", "ddp", "fsdp")
# Activations a transformer layer keeps for backward, in bytes per token and unit of width: 34 with 16-bit
# activations and attention that keeps no score matrix (flash-attention, SDPA); Korthikanti et al. 2022,
# "Reducing Activation Recomputation in Large Transformer Models". An estimate: MLP widths and dtypes vary.
ACTIVATION_BYTES_PER_TOKEN_AND_WIDTH = 34
USABLE_GPU_SHARE = 0.9  # the rest: CUDA context, allocator fragmentation, communication buffers


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden_size: int


def model_shape(spec) -> ModelShape | None:
    """A real model's layers and width, from its config.json (hub or local); None where it cannot be read."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(spec.source, revision=spec.revision,
                                            trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError):
        return None
    text = config.get_text_config()  # multimodal configs nest the language model's
    return ModelShape(text.num_hidden_layers, text.hidden_size)


def activations_gb(shape: ModelShape, micro_batch_tokens: int) -> float:
    """What one micro-batch of `micro_batch_tokens` tokens keeps for backward without checkpointing."""
    return shape.layers * micro_batch_tokens * shape.hidden_size * ACTIVATION_BYTES_PER_TOKEN_AND_WIDTH / 2**30


@dataclass(frozen=True)
class Placement:
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    strategy: str  # "ddp" (replicas) or "fsdp" (shards)
    gradient_checkpointing: bool = False

    def need(self, resource: str) -> float:
        return self.workers * (self.gpus_per_worker if resource == "GPU" else self.cpus_per_worker)

    def as_dict(self) -> dict:
        return asdict(self)


def gpus_for(params_b: float, gpu_memory_gb: float) -> int:
    """Fewest GPUs (a power of two) whose memory holds the full training state of a model this size."""
    needed = training_state_gb(params_b) * HEADROOM / gpu_memory_gb
    return 2 ** max(0, math.ceil(math.log2(max(needed, 1))))


def training_state_gb(params_b: float) -> float:
    return params_b * 1e9 * TRAINING_BYTES_PER_PARAMETER / 2**30


def plan(params_b: dict, *, workers: int | None, cpus_per_worker: float, gpus_per_worker: float | None,
         strategy: str, gpu_memory_gb: float, cluster_has_gpus: bool,
         gradient_checkpointing: bool | None = None, model_shapes: dict | None = None,
         micro_batch_tokens: int = 0) -> dict:
    """Model name -> Placement. `params_b`: each model's parameters in billions (as trained: a tiny twin's own);
    None for `workers`, `gpus_per_worker` or `gradient_checkpointing` means auto. `model_shapes`: name ->
    ModelShape (or None), with `micro_batch_tokens` (the longest micro-batch's, chosen and rejected) for the
    activations."""
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if cluster_has_gpus else 0.0
    placements = {}
    for model, size in params_b.items():
        needed = gpus_for(size, gpu_memory_gb) if gpus_per_worker else 1
        count = workers if workers is not None else needed
        chosen = strategy if strategy != "auto" else ("fsdp" if needed > 1 and count > 1 else "ddp")
        per_gpu_state_gb = training_state_gb(size) / (count if chosen == "fsdp" else 1)
        shape = (model_shapes or {}).get(model)
        if gradient_checkpointing is not None or not gpus_per_worker:
            checkpointing = bool(gradient_checkpointing)
        elif shape is not None:
            needed_gb = per_gpu_state_gb + activations_gb(shape, micro_batch_tokens)
            checkpointing = needed_gb > gpu_memory_gb * USABLE_GPU_SHARE
        else:
            checkpointing = per_gpu_state_gb > gpu_memory_gb / 2
        placements[model] = Placement(count, cpus_per_worker, gpus_per_worker, chosen, checkpointing)
    return placements


def cluster_capacity() -> tuple[list[dict], dict]:
    """(resources of each node shape, the cluster's most resources): the live nodes, plus the node types an
    autoscaler may start, at their max counts."""
    import ray

    shapes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    totals = dict(ray.cluster_resources())
    try:
        from ray._private.state import state  # what Ray Data reads for the same purpose

        config, most = state.get_cluster_config(), state.get_max_resources_from_cluster_config()
    except Exception:  # no autoscaler (a local or fixed cluster), or a Ray without this state
        config, most = None, None
    if config is not None:
        shapes += [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]
    for resource, amount in (most or {}).items():
        totals[resource] = max(totals.get(resource, 0), amount)
    return shapes, totals


def unplaceable(placements: dict, shapes: list[dict], totals: dict) -> str | None:
    """Why some model's trials can never start on this cluster, or None when every one can."""
    for model, placement in placements.items():
        per_worker = {"CPU": placement.cpus_per_worker, "GPU": placement.gpus_per_worker}
        if not any(all(shape.get(r, 0) >= amount for r, amount in per_worker.items() if amount) for shape in shapes):
            return (f"{model}: no node offers one worker's {placement.cpus_per_worker:g} CPU and "
                    f"{placement.gpus_per_worker:g} GPU; lower --cpus-per-worker or --gpus-per-worker")
        for resource in ("CPU", "GPU"):
            needed, available = placement.need(resource), totals.get(resource, 0)
            if needed > available:
                per = placement.gpus_per_worker if resource == "GPU" else placement.cpus_per_worker
                return (f"{model}: a trial needs {needed:g} {resource} ({placement.workers} workers x {per:g}) "
                        f"but the cluster has at most {available:g}; lower --workers-per-trial or "
                        f"--{resource.lower()}s-per-worker")
    return None


def max_concurrent_trials(placements: dict, totals: dict) -> int:
    """How many trials run at once: as many of the largest trial as the cluster holds (at least 1), so that
    no trial's worker group waits on another's resources."""
    fits = []
    for resource in ("CPU", "GPU"):
        largest = max(placement.need(resource) for placement in placements.values())
        if largest:
            fits.append(totals.get(resource, 0) // largest)
    return max(1, int(min(fits)))
