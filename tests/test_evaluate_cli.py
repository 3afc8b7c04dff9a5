"""python -m rmsweep.evaluate: scoring a checkpoint, and rescoring its saved scores without a model."""
import json
import subprocess
import sys
from dataclasses import asdict

import pytest

from rmsweep.analysis import scoring
from rmsweep.cli import evaluate
from rmsweep.config import ModelSpec
from rmsweep.model import reward_model

from cli_runner import run_main


def run_cli(*args, cwd):
    return run_main(evaluate.main, *args, cwd=cwd)


def run_module(*args, cwd):
    """As a user runs it: `python -m rmsweep.evaluate`."""
    return subprocess.run([sys.executable, "-m", "rmsweep.evaluate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_rescoring_a_scores_file_prints_and_writes_the_published_arithmetic(tmp_path):
    rows = [{"id": "a", "subset": "hep-go", "scores": [2.0, 1.0]},
            {"id": "b", "subset": "hep-go", "scores": [1.0, 1.0]},
            {"id": "c", "subset": "donotanswer", "scores": [0.5, -1.0]}]
    scores = _write_rows(tmp_path / "scores.jsonl", rows)
    result = run_module("--benchmark", "rewardbench", "--scores", str(scores), "--out", str(tmp_path / "r.json"),
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "r.json").read_text())
    assert written == scoring.rewardbench(rows)
    assert written["subsets"] == {"hep-go": 0.5, "donotanswer": 1.0} and written["overall"] == 0.75
    assert "overall" in result.stdout and "0.7500" in result.stdout


@pytest.mark.parametrize("line, message", [
    ('{"id": 1, "subset": "Math", "scores": [1, 2, 3, 4]}', "line 2: missing 'num_correct'"),
    ('{"id": 1, "subset": "Math", "scores": [1], "num_correct": 1}', "line 2: 'scores' must be a list of at least 2"),
    ('{"id": 1, "subset": "Math", "scores": [1, 2], "num_correct": 2}', "line 2: 'num_correct' must be an integer"),
    ('not json', "line 2: not JSON"),
    ('{"id": 1, "subset": "Cooking", "scores": [1, 2], "num_correct": 1}', "unknown RewardBench 2 subset 'Cooking'"),
])
def test_a_bad_scores_file_exits_2_naming_the_line(tmp_path, line, message):
    good = json.dumps({"id": 0, "subset": "Math", "scores": [4, 3, 2, 1], "num_correct": 1})
    (tmp_path / "s.jsonl").write_text(good + "\n" + line + "\n")
    result = run_cli("--benchmark", "rewardbench2", "--scores", str(tmp_path / "s.jsonl"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "rewardbench2-results.json").exists()


@pytest.mark.parametrize("rm_type", ["bt", "regression", "bnrm"])
def test_a_checkpoint_is_scored_and_its_saved_scores_rescore_identically(tmp_path, rm_type):
    tokenizer, model = reward_model.load_reward_model(ModelSpec("tiny", "llama"), rm_type)
    checkpoint = tmp_path / "checkpoint"
    reward_model.save_reward_model(model, tokenizer, checkpoint, {
        "model_spec": asdict(ModelSpec("tiny", "llama")), "rm_type": rm_type,
        "regression_weights": list(scoring.PUBLISHED_WEIGHTS["nemotron-4-340b"])})
    scored = run_cli("--checkpoint", str(checkpoint), "--benchmark", "rewardbench2", "--max-length", "128",
                     cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    saved = checkpoint / "rewardbench2-scores.jsonl"
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    assert {row["subset"] for row in rows} == set(scoring.REWARDBENCH2_DOMAINS)
    assert all(len(row["scores"]) >= 2 for row in rows)
    from_checkpoint = json.loads((checkpoint / "rewardbench2-results.json").read_text())
    rescored = run_cli("--benchmark", "rewardbench2", "--scores", str(saved), "--out", str(tmp_path / "again.json"),
                       cwd=tmp_path)
    assert rescored.returncode == 0, rescored.stderr
    assert json.loads((tmp_path / "again.json").read_text()) == from_checkpoint


def test_weights_flag_accepts_published_names_and_five_numbers():
    meta = {"regression_weights": [1, 0, 0, 0, 0]}
    assert evaluate._weights(None, meta, None, None, None, 128) == [1, 0, 0, 0, 0]
    assert evaluate._weights("llama-3-70b", meta, None, None, None, 128) == [0.65, 0.80, 0.45, 0.55, -0.40]
    assert evaluate._weights("0.1,0.2,0.3,0.4,-0.5", meta, None, None, None, 128) == [0.1, 0.2, 0.3, 0.4, -0.5]
    with pytest.raises(evaluate.UsageError, match="5 numbers"):
        evaluate._weights("0.1,0.2", meta, None, None, None, 128)
