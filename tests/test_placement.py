"""Worker groups per base model, and the checks that refuse a trial the cluster can never place."""
import pytest

from rmsweep.config import ModelSpec
from rmsweep.sweep import placement

A100_NODE = {"CPU": 96.0, "GPU": 8.0}
HEAD = {"CPU": 16.0}


def _plan(params_b, **overrides):
    options = dict(workers=None, cpus_per_worker=1.0, gpus_per_worker=None, strategy="auto", gpu_memory_gb=80.0,
                   cluster_has_gpus=True)
    return placement.plan(params_b, **{**options, **overrides})


def test_auto_gives_small_models_one_gpu_and_shards_large_ones():
    plans = _plan({"small": 2.6, "mid": 3.8, "large": 9.2})
    # 2.6B x 16 bytes x 1.25 = 48 GiB fits one 80 GB GPU; 3.8B needs 71 GiB, still one; 9.2B needs 171 GiB: 4.
    assert plans["small"] == placement.Placement(1, 1.0, 1.0, "ddp")
    # 3.8B's weights, gradients and AdamW state (57 GiB) leave less than half the GPU for activations: the
    # activations are recomputed in backward instead of kept (gradient checkpointing); a 4-way shard of 9.2B is 34.
    assert plans["mid"] == placement.Placement(1, 1.0, 1.0, "ddp", gradient_checkpointing=True)
    assert plans["large"] == placement.Placement(4, 1.0, 1.0, "fsdp")
    assert not _plan({"mid": 3.8}, gradient_checkpointing=False)["mid"].gradient_checkpointing
    assert _plan({"large": 9.2}, gpu_memory_gb=24)["large"].workers == 8


def test_auto_on_a_cluster_without_gpus_is_one_cpu_worker():
    assert _plan({"large": 9.2}, cluster_has_gpus=False)["large"] == placement.Placement(1, 1.0, 0.0, "ddp")


def test_given_counts_are_kept_and_strategy_follows_memory():
    plans = _plan({"small": 1.0, "large": 9.2}, workers=2)
    assert plans["small"] == placement.Placement(2, 1.0, 1.0, "ddp")  # fits one GPU: replicas
    assert plans["large"] == placement.Placement(2, 1.0, 1.0, "fsdp", True)  # does not: shards, 69 GiB each
    assert _plan({"small": 1.0}, workers=2, strategy="fsdp")["small"].strategy == "fsdp"


@pytest.mark.parametrize("plans, shapes, totals, message", [
    ({"m": placement.Placement(1, 1.0, 16.0, "ddp")}, [HEAD, A100_NODE], {"CPU": 112, "GPU": 8},
     "m: no node offers one worker's 1 CPU and 16 GPU"),
    ({"m": placement.Placement(16, 1.0, 1.0, "fsdp")}, [HEAD, A100_NODE], {"CPU": 112, "GPU": 8},
     "m: a trial needs 16 GPU (16 workers x 1) but the cluster has at most 8"),
    ({"m": placement.Placement(4, 2.0, 0.0, "ddp")}, [{"CPU": 2.0}], {"CPU": 2.0},
     "m: a trial needs 8 CPU (4 workers x 2) but the cluster has at most 2"),
])
def test_a_trial_the_cluster_can_never_place_is_refused(plans, shapes, totals, message):
    assert placement.unplaceable(plans, shapes, totals).startswith(message)


def test_a_placeable_request_passes_and_sets_concurrency_by_the_largest_trial():
    plans = {"small": placement.Placement(1, 1.0, 1.0, "ddp"), "large": placement.Placement(4, 1.0, 1.0, "fsdp")}
    totals = {"CPU": 16 + 2 * 96, "GPU": 16}
    assert placement.unplaceable(plans, [HEAD, A100_NODE], totals) is None
    assert placement.max_concurrent_trials(plans, totals) == 4  # 16 GPUs / 4 per large trial
    assert placement.max_concurrent_trials({"m": placement.Placement(1, 1.0, 0.0, "ddp")}, {"CPU": 2}) == 2


def test_auto_checkpointing_counts_a_micro_batchs_activations_where_the_model_shape_is_known():
    gemma_2_2b = {"m": placement.ModelShape(layers=26, hidden_size=2304)}
    # 2.6B: 39 GiB of weights, gradients and AdamW state, under half of 80 GB. 8 pairs of 2048 tokens keep
    # 26 layers x 32768 tokens x 2304 x 34 bytes = 62 GiB of activations: 101 GiB in all, over 90% of 80.
    assert _plan({"m": 2.6}, model_shapes=gemma_2_2b, micro_batch_tokens=8 * 2 * 2048)["m"].gradient_checkpointing
    # 1 pair: 7.8 GiB, 47 GiB in all: it fits without.
    assert not _plan({"m": 2.6}, model_shapes=gemma_2_2b, micro_batch_tokens=2 * 2048)["m"].gradient_checkpointing
    # No shape (a config that could not be read): the state rule, under half of the GPU.
    assert not _plan({"m": 2.6}, model_shapes={"m": None}, micro_batch_tokens=8 * 2 * 2048)["m"].gradient_checkpointing
    assert not _plan({"m": 2.6}, model_shapes=gemma_2_2b, micro_batch_tokens=8 * 2 * 2048,
                     cluster_has_gpus=False)["m"].gradient_checkpointing  # CPU workers: no GPU memory to save


def test_a_models_shape_is_read_from_its_config(tmp_path):
    from transformers import AutoConfig

    AutoConfig.for_model("llama", num_hidden_layers=3, hidden_size=32).save_pretrained(tmp_path / "m")
    assert placement.model_shape(ModelSpec(str(tmp_path / "m"), "gemma2")) == \
        placement.ModelShape(layers=3, hidden_size=32)
    assert placement.model_shape(ModelSpec(str(tmp_path / "missing"), "gemma2")) is None
