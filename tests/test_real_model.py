"""A real small pretrained chat model through the whole path of a candidate the registry does not list:
SmolLM2-135M-Instruct (its GGUF bundled by a package of the test extra, converted here to a checkpoint folder,
chat template included), two of its features measured on the local benchmark copies (a rehearsal: few tokens),
then a one-trial sweep at full scale on a small preference file written here."""
import json

import pandas as pd
import pytest
import yaml

from rmsweep.cli import features as features_cli
from rmsweep.cli import run
from rmsweep.features import cache
from rmsweep.sweep import storage

from feature_fixtures import FIXTURES, gguf_checkpoint

pytestmark = pytest.mark.slow
FACTS = [("What is 2 + 3?", "2 + 3 = 5.", "2 + 3 = 7."), ("Name a primary colour.", "Red is a primary colour.",
         "Green tea is a colour."), ("How many legs does a cat have?", "A cat has four legs.", "A cat has six legs."),
         ("What is the capital of France?", "Paris.", "Lyon."), ("Is ice cold or hot?", "Ice is cold.", "Ice is hot.")]


def preference_pairs(path):
    """Pairs in Skywork-Reward-Preference's schema (conversations), a right answer chosen over a wrong one."""
    with path.open("w") as handle:
        for repeat in range(4):
            for question, right, wrong in FACTS:
                prompt = {"role": "user", "content": question + " " * repeat}
                handle.write(json.dumps({"chosen": [prompt, {"role": "assistant", "content": right}],
                                         "rejected": [prompt, {"role": "assistant", "content": wrong}]}) + "\n")
    return path


def test_a_pretrained_model_measures_features_and_sweeps(local_ray, tmp_path, untrained_punkt, capsys):
    model = gguf_checkpoint(tmp_path / "smollm2-135m-instruct")
    runs = storage.Location(tmp_path / "runs")

    # A generation benchmark and a code one (the other two are measured on small models in test_triage.py).
    assert features_cli.main(["--models", str(model), "--tasks", "ifeval", "humaneval_plus", "--data-dir",
                              str(FIXTURES), "--max-new-tokens", "8", "--storage", runs.uri]) == 0
    stored = cache.records(runs)
    assert len(stored) == 2 and stored["value"].between(0, 100).all() and stored["rehearsal"].all()

    space = {"lr": [1.0e-5], "epochs": [1],
             "training": {"global_batch_size": 4, "micro_batch_size": 2, "warmup_steps": 1, "eval_every": 3,
                          "max_length": 96},  # 15 training pairs: 3 steps, one evaluation (and one checkpoint)
             "asha": {"grace_period": 1, "reduction_factor": 2},
             "data": {"train": [{"source": "skywork-80k-v0.2",
                                 "path": str(preference_pairs(tmp_path / "pairs.jsonl"))}],
                      "holdout": 0.25,
                      "eval": [{"source": "rewardbench", "path": str(FIXTURES.parent / "rewardbench.jsonl")},
                               {"source": "rewardbench2", "path": str(FIXTURES.parent / "rewardbench2.jsonl")}]}}
    (tmp_path / "tiny-recipe.yaml").write_text(yaml.safe_dump(space))
    status = run.main(["--models", str(model), "--scale", "full", "--space", str(tmp_path / "tiny-recipe.yaml"),
                       "--sampler", "grid", "--storage", runs.uri, "--name", "real"])
    assert status == 0
    best = pd.read_csv(tmp_path / "runs" / "real" / "best_per_model.csv")
    assert best.loc[0, "model"] == "smollm2-135m-instruct" and best.loc[0, "architecture"] == "llama"
    assert 0.13 < best.loc[0, "params_b"] < 0.14 and best.loc[0, "chat_format"] == "template"
    assert 0 <= best.loc[0, "rewardbench"] <= 1 and 0 <= best.loc[0, "val_accuracy"] <= 1
    assert "plain format" not in (tmp_path / "runs" / "real" / "report.md").read_text()
