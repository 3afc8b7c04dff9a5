"""The typed configuration: unknown, missing or out-of-range values fail where the object is built."""
import json
from dataclasses import FrozenInstanceError, asdict

import pytest

from rmsweep.config import RESUME_FIELDS, ModelSpec, TrainConfig, TrainingSettings

from conftest import sweep_config

SPEC = ModelSpec("tiny", "gemma2")


def test_an_unknown_or_missing_field_fails_where_the_config_is_built():
    with pytest.raises(TypeError, match="learning_rate"):
        TrainConfig(model="m", model_spec=SPEC, learning_rate=1e-3, epochs=1)
    with pytest.raises(TypeError, match="epochs"):
        TrainConfig(model="m", model_spec=SPEC, lr=1e-3)
    with pytest.raises(TypeError, match="eval_evry"):
        TrainConfig(model="m", model_spec=SPEC, lr=1e-3, epochs=1).replace(eval_evry=4)


@pytest.mark.parametrize("changes, message", [
    (dict(rm_type="dpo"), "rm_type must be one of bt, regression, bnrm"),
    (dict(bt_variant="hinge"), "bt_variant must be one of"),
    (dict(padding_free="yes"), "padding_free must be one of True, False, auto"),
    (dict(attention="flash"), "attention must be one of auto, eager, sdpa, flex_attention, flash_attention_2"),
    (dict(lr=0.0), "lr and epochs must be positive"),
    (dict(training=TrainingSettings(global_batch_size=30, micro_batch_size=8)), "multiple of"),
])
def test_values_outside_their_choices_fail(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"model": "m", "model_spec": SPEC, "lr": 1e-3, "epochs": 1, **changes})


def test_recipe_fields_can_be_replaced_by_name_and_configs_are_frozen():
    config = TrainConfig(model="m", model_spec=SPEC, lr=1e-3, epochs=1)
    changed = config.replace(eval_every=4, lr=3e-3)
    assert changed.training.eval_every == 4 and changed.lr == 3e-3 and config.training.eval_every == 20
    with pytest.raises(FrozenInstanceError):
        config.lr = 1.0
    with pytest.raises(ValueError, match="training.eval_every must be a positive integer"):
        TrainingSettings(eval_every=0)
    assert all(item.metadata["help"] for item in TrainConfig.__dataclass_fields__.values())


def test_a_model_spec_survives_the_checkpoint_metas_json():
    spec = ModelSpec("tiny", "qwen2", twin_seed=7, sizes=(("hidden_size", 128),))
    assert ModelSpec.from_record(json.loads(json.dumps(asdict(spec)))) == spec


def test_a_sweep_config_builds_each_trials_config_and_records_as_json(tmp_path):
    sweep = sweep_config(tmp_path, rm_type="bnrm", seed=3, attention="flex_attention")
    trial = sweep.trial_config("gemma-2-2b-it", 1e-3, 2, out_of_memory_dir=None)
    assert (trial.rm_type, trial.seed, trial.epochs, trial.training) == ("bnrm", 3, 2, sweep.space.training)
    assert trial.attention == "flex_attention"
    assert trial.model_spec == sweep.models["gemma-2-2b-it"] and trial.strategy == "ddp"
    record = json.loads(json.dumps(sweep.record(), default=str))
    assert set(RESUME_FIELDS) <= set(record) and record["space"]["training"]["eval_every"] == 16
    assert sweep.expected_trials == 2 * 4 and sweep_config(tmp_path, budget_steps=100).expected_trials is None
