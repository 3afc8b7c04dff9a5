"""Candidates beyond the registry (`rmsweep/data/candidates.py`): facts read from checkpoint configs, model sets
read from YAML, bad input refused in one line naming the file or model."""
import re
from dataclasses import asdict
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


def test_a_models_argument_is_a_folder_a_hub_id_or_a_name_for_the_registry(tmp_path):
    assert candidates.entry_from_argument(str(tmp_path)) == candidates.Entry(tmp_path.name, str(tmp_path))
    assert candidates.entry_from_argument("Qwen/Qwen3-4B@v1") == candidates.Entry("Qwen3-4B", "Qwen/Qwen3-4B",
                                                                                 revision="v1")
    assert candidates.entry_from_argument("gemma-2-2b-it") is None
    for missing in ("./nowhere", "a/b/c"):
        with pytest.raises(candidates.CandidateError, match=f"{missing}: no such folder"):
            candidates.entry_from_argument(missing)


def _causal_lm_checkpoint(folder: Path, model_type: str, chat_template: bool) -> Path:
    _checkpoint(folder, model_type, chat_template)
    config = AutoConfig.from_pretrained(folder)
    config.update(dict(vocab_size=len(tiny_tokenizer()), pad_token_id=0))
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def test_an_architecture_without_a_classification_class_gets_a_linear_head_on_its_backbone(tmp_path):
    """Granite has a causal LM but no sequence-classification class in transformers: the reward model is its
    backbone, loaded with the checkpoint's weights, and a linear head; it saves and reloads like any other. The
    tokenizer has no chat template, so texts take the plain format."""
    from rmsweep.data.tokenization import PLAIN_CHAT_TEMPLATE, chat_text
    from rmsweep.model import auto_head, reward_model

    folder = _causal_lm_checkpoint(tmp_path / "granite-small", "granite", chat_template=False)
    candidate = candidates.read(candidates.Entry("granite-small", str(folder)))
    assert candidate.head == auto_head.LINEAR_HEAD and not candidate.has_chat_template
    spec = candidates.model_spec(candidate, "full")
    assert spec.source == str(folder) and not spec.chat_template
    tokenizer, model = reward_model.load_reward_model(spec, "bt")
    backbone = AutoModelForCausalLM.from_pretrained(folder).model
    assert all(torch.equal(a, b) for a, b in zip(model.model.model.state_dict().values(),
                                                 backbone.state_dict().values()))
    assert tokenizer.chat_template == PLAIN_CHAT_TEMPLATE
    plain = chat_text(tokenizer, [{"role": "user", "content": "hi"}], "yes")
    assert plain == "<bos>User: hi\n\nAssistant: yes\n\n<eos>"
    ids, mask = torch.tensor([[7, 8, 9]]), torch.ones(1, 3, dtype=torch.long)
    reward_model.save_reward_model(model, tokenizer, tmp_path / "rm", {"rm_type": "bt", "model_spec": asdict(spec)})
    _, reloaded, _ = reward_model.load_checkpoint(tmp_path / "rm")
    assert torch.equal(model(ids, mask), reloaded(ids, mask))


def test_a_candidates_tiny_twin_loads_from_its_folders_config(folders):
    from rmsweep.model import reward_model

    candidate = candidates.read(candidates.Entry("gemma3-small", str(folders["gemma3"])))
    spec = candidates.model_spec(candidate, "tiny")
    assert spec.is_tiny and spec.twin_of == str(folders["gemma3"]) and not spec.chat_template
    tokenizer, model = reward_model.load_reward_model(spec, "regression")
    config = model.model.config
    assert config.model_type == "gemma3_text" and config.num_hidden_layers == 2 and config.num_labels == 5
    assert tokenizer.chat_template != tiny_tokenizer().chat_template  # no template in the candidate: plain format


def test_the_shipped_example_model_set_reads():
    entries = candidates.load_set(Path(__file__).parents[1] / "docs" / "examples" / "model-set.yaml")
    assert [entry.name for entry in entries] == ["ours-sft", "qwen3-4b", "gemma-3-4b-it", "olmo-2-1b-sft",
                                                 "gemma-2-2b-it"]
    assert candidates.registry_row(entries[-1])["name"] == "gemma-2-2b-it"
    assert all(candidates.registry_row(entry) is None for entry in entries[:-1])


def test_a_budget_sweep_after_triage_takes_the_triages_predictions_as_priors():
    from rmsweep.sweep import plan

    triage = {"ranking": [{"name": "a", "predicted": 61.0}, {"name": "b", "predicted": 58.0},
                          {"name": "c", "predicted": 50.0}]}
    # "pinned" could not be ranked (a feature missing): it gets the median prediction, not a place at either end.
    assert plan.budget_priors(["a", "c", "pinned"], "bt", triage) == {"a": 61.0, "c": 50.0, "pinned": 58.0}
