"""python -m rmsweep.features: the selector's features measured with lm-eval on local copies of each benchmark (a
few rows in the hub schema, our own text), one Ray task per (model, benchmark), cached so that a second run
measures nothing; code samples scored in the sandbox; bad input refused in one line."""
import json
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForCausalLM

from rmsweep.cli import features as features_cli
from rmsweep.features import benchmarks, cache, sandbox
from rmsweep.model.tiny import tiny_tokenizer
from rmsweep.sweep import storage

FIXTURES = Path(__file__).parent / "fixtures" / "features"
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def causal_lm_folder(folder: Path, model_type: str, chat_template: bool) -> Path:
    """A small random-weight causal LM with the tiny tokenizer, long enough positions for IFEval's generations."""
    tokenizer = tiny_tokenizer()
    config = AutoConfig.for_model(model_type, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  vocab_size=len(tokenizer), max_position_embeddings=4096,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    if not chat_template:
        tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def untrained_punkt(tmp_path, monkeypatch):
    """IFEval's checker needs NLTK's punkt_tab, which NLTK downloads; offline, an untrained Punkt model (empty
    parameter files: it splits sentences at punctuation, knowing no abbreviations) stands in."""
    folder = tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    for name in PUNKT_FILES:
        (folder / name).touch()
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk_data"))
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data"), *nltk.data.path])


@pytest.mark.parametrize("name", ["humaneval_plus", "mbpp_plus"])
def test_a_code_sample_passes_with_a_right_solution_and_fails_with_a_wrong_one(name):
    bench = benchmarks.benchmark(name)
    for doc in map(json.loads, (FIXTURES / f"{name}.jsonl").open()):
        right = doc["prompt"] + doc["canonical_solution"] if name == "humaneval_plus" else doc["code"]
        wrong = right.replace("return", "return 1 +", 1)
        assert sandbox.run_python(benchmarks.code_program(bench, doc, right + "\n```\nsome prose")).status == "passed"
        assert sandbox.run_python(benchmarks.code_program(bench, doc, wrong + "\n```")).status == "failed"


@pytest.mark.slow
def test_features_of_two_architectures_measured_once_then_served_from_the_cache(local_ray, tmp_path, untrained_punkt,
                                                                                capsys):
    qwen3 = causal_lm_folder(tmp_path / "qwen3-small", "qwen3", chat_template=True)
    granite = causal_lm_folder(tmp_path / "granite-small", "granite", chat_template=False)
    args = ["--models", str(qwen3), str(granite), "--data-dir", str(FIXTURES), "--max-new-tokens", "24",
            "--storage", str(tmp_path / "runs")]
    assert features_cli.main(args) == 0
    first = capsys.readouterr().out
    stored = cache.records(storage.Location(tmp_path / "runs"))
    assert len(stored) == 8 and set(stored["benchmark"]) == set(benchmarks.BENCHMARKS)
    assert stored["value"].between(0, 100).all() and stored["rehearsal"].all()
    assert (stored["items"] == stored["benchmark"].map({"ifeval": 3, "toxigen": 3, "humaneval_plus": 2,
                                                        "mbpp_plus": 2})).all()
    granite_settings = stored.loc[stored["model"] == "granite-small"].set_index("benchmark")["settings"]
    assert granite_settings["ifeval"].endswith("no chat template: raw prompt")
    assert "0 of 8 measurements from the cache" in first and "[8/8]" in first and "*" in first
    # No rehearsal value reaches the selector.
    assert cache.measured_features(storage.Location(tmp_path / "runs")).empty

    times = {path: path.stat().st_mtime_ns for path in (tmp_path / "runs" / "features").glob("*-*.json")}
    assert features_cli.main(args) == 0
    second = capsys.readouterr().out
    assert "8 of 8 measurements from the cache" in second and "measuring" not in second
    assert {path: path.stat().st_mtime_ns for path in times} == times


@pytest.mark.parametrize("args, message", [
    (["--models", "m", "--tasks", "mmlu"], "unknown benchmark 'mmlu'"),
    (["--models", "m", "--data-dir", "empty"], "no ifeval.jsonl (or .json, .parquet, .csv) there"),
    (["--models", "m", "--limit", "0"], "--limit must be positive"),
    (["--models", "./nowhere"], "./nowhere: no such folder"),
    (["--models", "m", "m"], "two models are named 'm'"),
    (["--family", "gemma2", "--model-set", "set.yaml"], "--model-set names the models itself"),
    ([], "name the models"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    AutoConfig.for_model("qwen3", num_hidden_layers=2, hidden_size=64).save_pretrained(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    assert features_cli.main([*args, "--storage", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not (tmp_path / "runs").exists()
