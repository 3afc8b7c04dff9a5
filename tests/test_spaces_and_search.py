import shutil

import pytest
import yaml
from ray.tune.search import Searcher

from rmsweep import spaces
from rmsweep.sweep import PerModelSearcher


def test_default_space_resolves_per_rm_type_and_scale():
    paper_bt = spaces.load("gemma2", "bt", "full")
    assert (paper_bt.lr_low, paper_bt.lr_high) == (5e-7, 5e-6) and paper_bt.training["global_batch_size"] == 64
    paper_regression = spaces.load("gemma2", "regression", "full")
    assert (paper_regression.lr_low, paper_regression.lr_high) == (1e-7, 9e-6)
    tiny = spaces.load("gemma2", "bt", "tiny")
    assert tiny.lr_high == 0.1 and tiny.epochs == (1, 2) and tiny.training["warmup_steps"] == 20


def test_family_file_wins_over_default(tmp_path):
    shutil.copy(spaces.DEFAULT_DIR / "default.yaml", tmp_path / "default.yaml")
    raw = yaml.safe_load((tmp_path / "default.yaml").read_text())
    raw["epochs"] = [2]
    (tmp_path / "gemma2.yaml").write_text(yaml.safe_dump(raw))
    assert spaces.load("gemma2", "bt", "full", tmp_path).epochs == (2,)
    assert spaces.load("qwen2.5", "bt", "full", tmp_path).epochs == (1, 2, 3)


@pytest.mark.parametrize("change, message", [
    (lambda raw: raw.update(learning_rate=1), "unknown key 'learning_rate'"),
    (lambda raw: raw.update(lr={"low": 0, "high": 1e-5}), "0 < low < high"),
    (lambda raw: raw.update(lr={"low": 1e-5, "high": 1e-6}), "0 < low < high"),
    (lambda raw: raw.update(epochs=[]), "non-empty list"),
    (lambda raw: raw["training"].update(warmup_steps=-1), "positive integer"),
])
def test_malformed_spaces_are_refused(tmp_path, change, message):
    raw = yaml.safe_load((spaces.DEFAULT_DIR / "default.yaml").read_text())
    change(raw)
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(spaces.SpaceError, match=message):
        spaces.load("gemma2", "bt", "full", tmp_path)


def test_searcher_gives_each_model_its_own_samples_round_robin():
    space = spaces.load("gemma2", "bt", "tiny")
    searcher = PerModelSearcher(["a", "b"], space.distributions(), samples_per_model=3, seed=0)
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [c["model"] for c in configs] == ["a", "b"] * 3
    assert all(space.lr_low <= c["lr"] <= space.lr_high and c["epochs"] in space.epochs for c in configs)
    assert searcher.suggest("t6") == Searcher.FINISHED
    for i, config in enumerate(configs):
        searcher.on_trial_complete(f"t{i}", {"val_accuracy": 0.5, **config})


def test_tpe_guides_sampling_after_half_the_budget():
    space = spaces.load("gemma2", "bt", "tiny")
    searcher = PerModelSearcher(["a"], space.distributions(), samples_per_model=8, seed=0)
    assert searcher._studies["a"]._sampler._n_startup_trials == 4
