import pytest
import torch

from rmsweep import datasets, modeling, registry, tiny

TEXTS = [("please explain rivers", "detail accurate therefore"), ("please compare toxin harbors", "sorry cannot")]


def test_every_registry_architecture_has_a_tiny_preset():
    assert set(registry.models()["architecture"]) <= set(tiny.ARCHITECTURES)


@pytest.mark.parametrize("architecture", sorted(tiny.ARCHITECTURES))
def test_tiny_preset_builds_offline_and_reads_reward_independent_of_padding_side(architecture):
    torch.manual_seed(0)
    tokenizer, model = modeling.load_reward_model({"source": "tiny", "architecture": architecture}, num_outputs=1)
    assert type(model).__name__.endswith("ForSequenceClassification")
    model.eval()
    texts = [datasets.chat_text(tokenizer, prompt, response) for prompt, response in TEXTS]
    scores = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            scores[side] = modeling.rewards(model, batch["input_ids"], batch["attention_mask"])
    assert scores["left"].shape == (2, 1)
    torch.testing.assert_close(scores["left"], scores["right"])
    with torch.no_grad():  # and each equals the unpadded sequence scored alone
        single = tokenizer(texts[1:], return_tensors="pt", add_special_tokens=False)
        alone = modeling.rewards(model, single["input_ids"], single["attention_mask"])
    torch.testing.assert_close(scores["right"][1:], alone)


def test_reward_read_at_last_real_token_even_when_pad_equals_eos():
    torch.manual_seed(0)
    tokenizer, model = modeling.load_reward_model({"source": "tiny", "architecture": "llama"}, num_outputs=1)
    model.eval()
    eos = tokenizer.eos_token_id
    model.config.pad_token_id = eos  # the pitfall: an eos inside the text looks like padding by id
    ids = torch.tensor([[5, 9, eos, 12, 13, eos]])
    with torch.no_grad():
        full = modeling.rewards(model, ids, torch.ones_like(ids))
        hidden = model.base_model(input_ids=ids).last_hidden_state[:, -1]
    torch.testing.assert_close(full, model.score(hidden))


def test_checkpoint_round_trip(tmp_path):
    tokenizer, model = modeling.load_reward_model({"source": "tiny", "architecture": "qwen2"}, num_outputs=5)
    modeling.save_reward_model(model, tokenizer, tmp_path, {"rm_type": "regression"})
    loaded_tokenizer, loaded, meta = modeling.load_checkpoint(tmp_path)
    assert meta == {"rm_type": "regression"} and loaded.config.num_labels == 5
    batch = datasets.pad([[2, 7, 8, 3]], loaded_tokenizer.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(modeling.rewards(model.eval(), *batch), modeling.rewards(loaded.eval(), *batch))
