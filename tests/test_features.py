"""python -m rmsweep.features: code samples scored in the sandbox; bad input refused in one line. Measuring on
local copies of each benchmark, and the cache, are tested with the triage (test_triage.py)."""
import json
import os

import pytest
from transformers import AutoConfig

from rmsweep.cli import features as features_cli
from rmsweep.features import benchmarks, sandbox

from feature_fixtures import FIXTURES


@pytest.mark.parametrize("name", ["humaneval_plus", "mbpp_plus"])
def test_a_code_sample_passes_with_a_right_solution_and_fails_with_a_wrong_one(name):
    bench = benchmarks.benchmark(name)
    for doc in map(json.loads, (FIXTURES / f"{name}.jsonl").open()):
        right = doc["prompt"] + doc["canonical_solution"] if name == "humaneval_plus" else doc["code"]
        wrong = right.replace("return", "return 1 +", 1)
        assert sandbox.run_python(benchmarks.code_program(bench, doc, right + "\n```\nsome prose")).status == "passed"
        assert sandbox.run_python(benchmarks.code_program(bench, doc, wrong + "\n```")).status == "failed"


@pytest.mark.parametrize("args, message", [
    (["--models", "m", "--tasks", "mmlu"], "unknown benchmark 'mmlu'"),
    (["--models", "m", "--data-dir", "empty"], "no ifeval.jsonl (or .json, .parquet, .csv) there"),
    (["--models", "m", "--limit", "0"], "--limit must be positive"),
    (["--models", "./nowhere"], "./nowhere: no such folder"),
    (["--models", "m", "m"], "two base models are named 'm'"),
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


def test_a_code_benchmark_scores_lm_evals_samples_in_the_sandbox(monkeypatch):
    """The plumbing from lm-eval's logged samples to pass@1: a model answering every problem with the reference
    solution scores 100, one answering with prose 0 (lm-eval itself stood in for: no model runs here)."""
    import lm_eval

    from rmsweep.features import measure

    bench = benchmarks.benchmark("humaneval_plus")
    docs = [json.loads(line) for line in (FIXTURES / "humaneval_plus.jsonl").open()]

    def scored(answer) -> float:
        samples = [{"doc": doc, "resps": [[answer(doc) + "\n```\nDone."]]} for doc in docs]
        monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **_: {"samples": {"rmsweep_humaneval_plus": samples}})
        monkeypatch.setattr(measure, "_language_model", lambda *_: None)
        return measure.measure(measure.FeatureModel("m", "m"), bench, None, None, None, "cpu")["value"]

    assert scored(lambda doc: doc["prompt"] + doc["canonical_solution"]) == 100
    assert scored(lambda doc: "I would rather not.") == 0


def test_ifeval_is_the_mean_of_prompt_and_instruction_strict_accuracy_as_the_leaderboard_reports_it():
    results = {"alias": "rmsweep_ifeval", "prompt_level_strict_acc,none": 0.5, "inst_level_strict_acc,none": 0.7,
               "prompt_level_loose_acc,none": 0.9, "inst_level_loose_acc,none": 0.95}
    assert benchmarks.value(benchmarks.benchmark("ifeval"), results) == pytest.approx(60.0)
    assert benchmarks.value(benchmarks.benchmark("toxigen"), {"acc,none": 0.25, "acc_stderr,none": 0.1}) == 25.0


def test_a_driver_on_a_cluster_with_a_token_asks_for_token_authentication(tmp_path, monkeypatch):
    """As rmsweep.run does: RAY_AUTH_MODE set before Ray is first imported, or a token cluster refuses the driver."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "a-token")
    monkeypatch.setenv("RAY_AUTH_MODE", "")  # so that the value main() sets is undone after the test
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert features_cli.main(["--models", "m", "--tasks", "mmlu", "--storage", str(tmp_path)]) == 2
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_a_hub_models_revision_is_pinned_to_its_commit_so_a_moved_branch_is_measured_anew(tmp_path, monkeypatch):
    """Offline, from the local hub cache (its layout as huggingface_hub writes it): the key names the commit."""
    from huggingface_hub import constants

    from rmsweep.config import ModelSpec
    from rmsweep.features import cache
    from rmsweep.features.measure import FeatureModel

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # read at each call; the variables at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "models--org--model"

    def cached_main(commit):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text('{"model_type": "qwen3"}')
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return FeatureModel.of("m", ModelSpec("org/model", "qwen3"))

    bench = benchmarks.benchmark("ifeval")
    before, after = cached_main("1" * 40), cached_main("2" * 40)
    assert (before.revision, after.revision) == ("1" * 40, "2" * 40)
    assert cache.key(before, bench, None, "0", None, None) != cache.key(after, bench, None, "0", None, None)
    unknown = FeatureModel.of("x", ModelSpec("org/absent", "qwen3", revision="v1"))
    assert unknown.revision == "v1"  # neither the hub nor the cache knows it: loading it will say so


def test_family_all_measures_every_registry_model_by_its_hub_id(monkeypatch):
    """`--family all`: the paper's models, to refit the selector on features measured one way (offline here: no
    commit to pin, so each keeps its default branch)."""
    from huggingface_hub import constants

    from rmsweep.data import registry

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    models = features_cli.feature_models(features_cli.parse_args(["--family", "all"]))
    table = registry.models()
    assert [(m.name, m.source) for m in models] == list(zip(table["name"], table["hf_id"]))
    assert all(m.revision is None for m in models)
