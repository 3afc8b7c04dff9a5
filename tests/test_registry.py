import pytest

from rmsweep.data import candidates, registry


def test_all_paper_models_are_registered():
    table = registry.models()
    assert len(table) == 42
    assert table["hf_id"].is_unique and table["name"].is_unique
    assert set(table["size_group"]) == set(registry.SIZE_GROUPS)


def test_query_by_family():
    assert list(registry.family("gemma2")["name"]) == ["gemma-2-9b-it", "gemma-2-2b-it"]
    assert len(registry.family("qwen2.5")) == 4
    assert set(registry.family("llama3.1")["name"]) == {"Llama-3.1-8B-Instruct", "Llama-3.1-8B"}
    assert "tulu3" in registry.families()


def test_query_by_name_and_hub_id():
    by_name = registry.model("gemma-2-2b-it")
    assert by_name["hf_id"] == "google/gemma-2-2b-it"
    assert by_name["params_b"] == pytest.approx(2.61)
    assert registry.model("Qwen/Qwen2.5-7B-Instruct")["size_group"] == ">=6B"


def test_query_by_size_group():
    small = registry.size_group("<3B")
    assert len(small) > 0 and (small["params_b"] < 3).all()


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(registry.RegistryError, match="did you mean 'gemma2'"):
        registry.family("gema2")
    with pytest.raises(registry.RegistryError, match="unknown model"):
        registry.model("no-such-model")


def test_model_spec_sources(tmp_path):
    def spec(name, *args):
        return candidates.model_spec(candidates.from_registry(registry.model(name)), *args)

    twin = spec("gemma-2-2b-it", "tiny")
    assert twin.source == "tiny" and twin.architecture == "gemma2" and not twin.trust_remote_code
    assert twin.twin_of is None and twin.chat_template
    assert spec("gemma-2-2b-it", "tiny") == twin  # the same twin every time, another for another model
    assert spec("gemma-2-9b-it", "tiny").twin_seed != twin.twin_seed
    assert spec("gemma-2-2b-it", "full").source == "google/gemma-2-2b-it"
    assert spec("gemma-2-2b-it", "full", tmp_path).source == str(tmp_path / "gemma-2-2b-it")


def test_with_results_attaches_scores_and_drops_unknown_models():
    import pandas as pd

    results = pd.DataFrame({"model": ["gemma-2-2b-it", "not-registered"], "rewardbench": [0.9, 0.5]})
    table = registry.with_results(results, ["rewardbench"])
    assert list(table["name"]) == ["gemma-2-2b-it"]
    assert table.loc[0, "rewardbench"] == 0.9 and table.loc[0, "ifeval"] == registry.model("gemma-2-2b-it")["ifeval"]
