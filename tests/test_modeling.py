import json
from dataclasses import asdict

import pytest
import torch

from rmsweep.config import ModelSpec
from rmsweep.data import candidates, registry, sources, tokenization
from rmsweep.model import heads, reward_model, tiny

TEXTS = [("please explain rivers", "detail accurate therefore"), ("please compare toxin harbors", "sorry cannot")]


def test_every_registry_architecture_has_a_tiny_preset():
    assert set(registry.models()["architecture"]) <= set(tiny.ARCHITECTURES)


@pytest.mark.parametrize("architecture", sorted(tiny.ARCHITECTURES))
def test_tiny_preset_builds_offline_and_reads_reward_independent_of_padding_side(architecture):
    torch.manual_seed(0)
    tokenizer, model = reward_model.load_reward_model(ModelSpec("tiny", architecture), "bt")
    assert type(model.model).__name__.endswith("ForSequenceClassification")
    model.eval()
    texts = [tokenization.chat_text(tokenizer, sources.user_prompt(prompt), response) for prompt, response in TEXTS]
    scores = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            scores[side] = model(batch["input_ids"], batch["attention_mask"])
    assert scores["left"].shape == (2, 1)
    torch.testing.assert_close(scores["left"], scores["right"])
    with torch.no_grad():  # and each equals the unpadded sequence scored alone
        single = tokenizer(texts[1:], return_tensors="pt", add_special_tokens=False)
        alone = model(single["input_ids"], single["attention_mask"])
    torch.testing.assert_close(scores["right"][1:], alone)


def test_reward_read_at_last_real_token_even_when_pad_equals_eos():
    torch.manual_seed(0)
    tokenizer, rewarder = reward_model.load_reward_model(ModelSpec("tiny", "llama"), "bt")
    model = rewarder.model.eval()
    eos = tokenizer.eos_token_id
    model.config.pad_token_id = eos  # the pitfall: an eos inside the text looks like padding by id
    ids = torch.tensor([[5, 9, eos, 12, 13, eos]])
    with torch.no_grad():
        full = reward_model.rewards(model, ids, torch.ones_like(ids))
        hidden = model.base_model(input_ids=ids).last_hidden_state[:, -1]
    torch.testing.assert_close(full, model.score(hidden))


@pytest.mark.parametrize("architecture", sorted(tiny.ARCHITECTURES))
def test_checkpoint_round_trip_keeps_tokenizer_and_rewards(tmp_path, architecture):
    spec = ModelSpec("tiny", architecture)
    tokenizer, model = reward_model.load_reward_model(spec, "regression")
    reward_model.save_reward_model(model, tokenizer, tmp_path, {"rm_type": "regression", "model_spec": asdict(spec)})
    loaded_tokenizer, loaded, meta = reward_model.load_checkpoint(tmp_path)
    assert meta["rm_type"] == "regression" and loaded.model.config.num_labels == 5
    text = tokenization.chat_text(tokenizer, sources.user_prompt(TEXTS[0][0]), TEXTS[0][1])
    assert loaded_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(batch["input_ids"], batch["attention_mask"]),
                                   loaded.eval()(batch["input_ids"], batch["attention_mask"]))


def test_bnrm_checkpoint_round_trip_rebuilds_its_head(tmp_path):
    spec = ModelSpec("tiny", "qwen2")
    torch.manual_seed(0)
    tokenizer, model = reward_model.load_reward_model(spec, "bnrm")
    with torch.no_grad():
        model.model.score.loading_mean.mul_(3.0)  # not the initial values, so a fresh head would differ
    reward_model.save_reward_model(model, tokenizer, tmp_path, {"rm_type": "bnrm", "model_spec": asdict(spec)})
    _, loaded, _ = reward_model.load_checkpoint(tmp_path)
    assert isinstance(loaded.model.score, heads.BNRMHead)
    batch = tokenizer([tokenization.chat_text(tokenizer, sources.user_prompt("please explain rivers"), "detail")],
                      return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(batch["input_ids"], batch["attention_mask"]),
                                   loaded.eval()(batch["input_ids"], batch["attention_mask"]))


def test_real_checkpoint_path_loads_a_causal_lm_directory_and_pins_the_pad_token(tmp_path):
    """--model-dir / hub loading, offline: a base model saved as a causal LM, its tokenizer without a pad token."""
    from transformers import AutoModelForCausalLM

    tokenizer = tiny.tiny_tokenizer()
    config = tiny.tiny_config("qwen2", tokenizer, num_labels=1)
    config.pad_token_id = None
    tokenizer.pad_token = None
    directory = tmp_path / "Qwen2.5-0.5B-Instruct"
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)

    spec = candidates.model_spec(candidates.from_registry(registry.model("Qwen2.5-0.5B-Instruct")), "full", tmp_path)
    loaded_tokenizer, model = reward_model.load_reward_model(spec, "regression")
    assert loaded_tokenizer.pad_token == loaded_tokenizer.eos_token
    assert model.model.config.pad_token_id == loaded_tokenizer.eos_token_id
    assert type(model.model).__name__ == "Qwen2ForSequenceClassification" and model.model.config.num_labels == 5


CUSTOM_CODE = '''
import os
from pathlib import Path
from transformers import AutoModel, Qwen2Config, Qwen2ForSequenceClassification, Qwen2Model

Path(os.environ["CUSTOM_CODE_MARKER"]).write_text("ran")  # the test checks whether this ran


class CustomConfig(Qwen2Config):
    model_type = "custom-qwen2"


class CustomModel(Qwen2ForSequenceClassification):
    config_class = CustomConfig


class CustomBackbone(Qwen2Model):
    config_class = CustomConfig


AutoModel.register(CustomConfig, CustomBackbone, exist_ok=True)  # the backbone the classifier builds
'''


def test_a_models_own_code_runs_only_with_trust_remote_code(tmp_path, monkeypatch):
    marker = tmp_path / "custom_code_ran"
    monkeypatch.setenv("CUSTOM_CODE_MARKER", str(marker))
    tokenizer = tiny.tiny_tokenizer()
    config = tiny.tiny_config("qwen2", tokenizer, num_labels=1)
    directory = tmp_path / "Qwen2.5-0.5B-Instruct"
    reward_model.AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "custom.py").write_text(CUSTOM_CODE)
    saved = json.loads((directory / "config.json").read_text())
    saved["model_type"] = "custom-qwen2"  # no class in transformers: only the repository's code can load it
    saved["auto_map"] = {"AutoConfig": "custom.CustomConfig",
                         "AutoModelForSequenceClassification": "custom.CustomModel"}
    (directory / "config.json").write_text(json.dumps(saved))
    candidate = candidates.from_registry(registry.model("Qwen2.5-0.5B-Instruct"))

    with pytest.raises(ValueError, match="trust_remote_code"):
        reward_model.load_reward_model(candidates.model_spec(candidate, "full", tmp_path), "bt")
    assert not marker.exists()
    trusted = candidates.model_spec(candidate, "full", tmp_path, trust_remote_code=True)
    _, model = reward_model.load_reward_model(trusted, "bt")
    assert type(model.model).__name__ == "CustomModel" and marker.exists()


def _long_sequences(seed: int = 0) -> list:
    """Past Gemma 2's tiny sliding window of 64, so the packed rows must keep it."""
    rng = torch.Generator().manual_seed(seed)
    return [torch.randint(6, 40, (length,), generator=rng).tolist() for length in (37, 90, 5, 130)]


@pytest.mark.parametrize("architecture", tiny.ARCHITECTURES)
def test_packed_sequences_get_the_rewards_of_padded_ones(architecture):
    _, model = reward_model.load_reward_model(ModelSpec("tiny", architecture), "regression")
    model.eval()
    sequences = _long_sequences()
    with torch.no_grad():
        padded = model(*tokenization.pad(sequences, pad_id=0))
        packed = model(**tokenization.pack(sequences))
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (the device machine runs it)")
@pytest.mark.parametrize("attention", ["auto", "flex_attention"])
@pytest.mark.parametrize("architecture", tiny.ARCHITECTURES)
def test_on_a_gpu_packed_sequences_get_the_rewards_of_padded_ones_in_bf16(architecture, attention):
    spec, sequences = ModelSpec("tiny", architecture), _long_sequences()
    _, model = reward_model.load_reward_model(spec, "regression")
    _, packing_model = reward_model.load_reward_model(spec, "regression", attention=attention)
    model, packing_model = model.to("cuda").eval(), packing_model.to("cuda").eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        padded = model(*tokenization.pad(sequences, pad_id=0, device="cuda")).float()
        packed = packing_model(**tokenization.pack(sequences, device="cuda")).float()
    torch.testing.assert_close(packed, padded, atol=2e-2, rtol=2e-2)  # bf16 keeps ~3 significant digits
