"""Candidates beyond the registry (`rmsweep/data/candidates.py`): facts read from checkpoint configs, model sets
read from YAML, bad input refused in one line naming the file or model."""
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from rmsweep.data import candidates
from rmsweep.model.tiny import tiny_tokenizer

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, vocab_size=512)


def _checkpoint(folder: Path, model_type: str, chat_template: bool, **extra) -> Path:
    """A candidate's folder as a hub snapshot has it (config and tokenizer files; no weights needed)."""
    AutoConfig.for_model(model_type, **SMALL, **extra).save_pretrained(folder)
    tokenizer = tiny_tokenizer()
    if not chat_template:
        tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("candidates")
    return {"qwen3": _checkpoint(root / "qwen3-small", "qwen3", chat_template=True),
            "gemma3": _checkpoint(root / "gemma3-small", "gemma3_text", chat_template=False, sliding_window=32)}


@pytest.mark.parametrize("key, model_type", [("qwen3", "qwen3"), ("gemma3", "gemma3_text")])
def test_a_local_candidates_facts_are_read_from_its_config(folders, key, model_type):
    candidate = candidates.read(candidates.Entry(key, str(folders[key])))
    config = AutoConfig.from_pretrained(folders[key])
    with torch.device("cpu"):
        instantiated = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    assert candidate.architecture == model_type
    assert candidate.params_b * 1e9 == pytest.approx(instantiated, abs=0.5)
    assert candidate.size_group == "<3B" and candidate.head == "sequence-classification"
    assert candidate.has_chat_template == (key == "qwen3")


def test_size_groups_follow_the_papers_bounds():
    assert [candidates.size_group(b) for b in (0.5, 2.99, 3.0, 5.9, 6.0, 70)] == [
        "<3B", "<3B", "3-6B", "3-6B", ">=6B", ">=6B"]


def test_a_model_set_file_is_read_with_folders_relative_to_it(tmp_path, folders):
    (tmp_path / "mine").symlink_to(folders["qwen3"])
    path = tmp_path / "set.yaml"
    path.write_text("models:\n"
                    "  - {name: mine, source: mine, stage: sft, notes: our checkpoint}\n"
                    "  - {name: qwen3-4b, source: Qwen/Qwen3-4B, revision: main, family: qwen3}\n")
    mine, hub = candidates.load_set(path)
    assert mine == candidates.Entry("mine", str(tmp_path / "mine"), stage="sft", notes="our checkpoint")
    assert hub == candidates.Entry("qwen3-4b", "Qwen/Qwen3-4B", revision="main", family="qwen3")


@pytest.mark.parametrize("text, message", [
    ("models: [", "not valid YAML"),
    ("candidates: []", "needs a non-empty list under 'models'"),
    ("models:\n  - {name: a}", "models[0] needs a name and a source"),
    ("models:\n  - {name: a, source: x/y, size: 7}", "models[0]: unknown key 'size'"),
    ("models:\n  - {name: a, source: x/y}\n  - {name: a, source: x/z}", "the name 'a' is used twice"),
])
def test_a_malformed_model_set_is_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "set.yaml"
    path.write_text(text)
    with pytest.raises(candidates.CandidateError, match=re.escape(message)) as error:
        candidates.load_set(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_missing_folder_an_unreadable_config_and_an_unknown_architecture_are_named(tmp_path):
    with pytest.raises(candidates.CandidateError, match="mine: ./nowhere is neither a folder nor a hub id"):
        candidates.read(candidates.Entry("mine", "./nowhere"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(candidates.CandidateError, match="broken: cannot read the config"):
        candidates.read(candidates.Entry("broken", str(tmp_path / "broken")))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "clip_vision_model"}')
    with pytest.raises(candidates.CandidateError, match="architecture 'clip_vision_model' has neither"):
        candidates.read(candidates.Entry("odd", str(tmp_path / "odd")))
    with pytest.raises(candidates.CandidateError, match="no such file"):
        candidates.load_set(tmp_path / "absent.yaml")


@pytest.mark.parametrize("model_type, twin_type", [("qwen3", "qwen3"), ("gemma3", "gemma3_text"),
                                                    ("olmo2", "olmo2"), ("smollm3", "smollm3")])
def test_a_candidates_tiny_twin_is_its_architecture_shrunk(model_type, twin_type):
    """--scale tiny for a candidate the registry does not list: its own config (here transformers' defaults, a
    multi-billion-parameter shape; Gemma 3's multimodal config gives its text model), shrunk, trains on a CPU."""
    from transformers import AutoModelForSequenceClassification

    from rmsweep.model import tiny

    full = AutoConfig.for_model(model_type)
    tokenizer = tiny_tokenizer()
    twin = tiny.shrink(full, tokenizer, num_labels=1)
    text = full.get_text_config()
    assert twin.model_type == twin_type and twin.num_hidden_layers == 2 and twin.hidden_size == 64
    assert twin.rope_parameters == text.rope_parameters  # what is not a size is kept
    if getattr(twin, "layer_types", None):
        assert len(twin.layer_types) == 2 and twin.layer_types == text.layer_types[:2]
    if getattr(twin, "sliding_window", None):
        assert twin.sliding_window <= 64
    model = AutoModelForSequenceClassification.from_config(twin)
    assert sum(p.numel() for p in model.parameters()) < 200_000
    rewards = model(input_ids=torch.randint(6, len(tokenizer), (2, 40))).logits
    rewards.sum().backward()
    assert rewards.shape == (2, 1) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
