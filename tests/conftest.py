"""Shared fixtures: one local Ray instance per test module that needs one, and a small SweepConfig."""
import pytest


def pytest_collection_modifyitems(items):
    """Tests that fork (two training ranks from this process) run first: a fork of a process that has run Ray
    carries its gRPC threads' state into the child, which can abort it."""
    items.sort(key=lambda item: item.get_closest_marker("forks") is None)

from rmsweep.config import SweepConfig
from rmsweep.data import candidates, registry
from rmsweep.sweep import placement, spaces


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU local Ray for the module; the dashboard stays on (Train V2 releases finished worker groups through
    the State API it hosts)."""
    import ray

    ray.init(address="local", num_cpus=2, namespace="rmsweep", log_to_driver=False)  # never a running cluster
    yield
    ray.shutdown()


def sweep_config(tmp_path, **changes) -> SweepConfig:
    """The tiny gemma2 sweep's config, as `python -m rmsweep.run --family gemma2 --scale tiny` builds it."""
    facts = {row["name"]: candidates.from_registry(row) for _, row in registry.family("gemma2").iterrows()}
    models = {name: candidates.model_spec(fact, "tiny") for name, fact in facts.items()}
    fields = dict(
        name="gemma2-bt-tiny", run_dir=str(tmp_path), family="gemma2", models=models, facts=facts,
        params_b={name: 0.0 for name in models}, space=spaces.load("gemma2", "bt", "tiny"),
        placements={name: placement.Placement(1, 1.0, 0.0, "ddp") for name in models}, max_concurrent_trials=2,
        train_examples=2048)
    return SweepConfig(**{**fields, **changes})


@pytest.fixture
def untrained_punkt(tmp_path, monkeypatch):
    """IFEval's checker needs NLTK's punkt_tab, which NLTK downloads; offline, an untrained Punkt model (empty
    parameter files: it splits sentences at punctuation, knowing no abbreviations) stands in, for this process
    (nltk.data.path) and Ray's tasks (NLTK_DATA, which rmsweep.features forwards to them)."""
    import nltk

    folder = tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (folder / name).touch()
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk_data"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data"), *nltk.data.path])
