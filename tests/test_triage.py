"""The whole path for candidates the registry does not list: their features measured with lm-eval on local copies
of the benchmarks (two architectures; a second run served from the cache), then `--triage 2 --pin` over a model set
of four (a registry model and three local checkpoints of architectures it lacks, two without a chat template):
the features they lack measured, the top two plus the pinned one swept as tiny twins, predicted vs achieved in
report.md. The sweep is of BNRM reward models (scaled BT loss) on the paper's grid, checkpoints deleted once
scored: what a BNRM sweep needs shown on the same trials."""
import json

import pandas as pd
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from rmsweep.cli import features as features_cli
from rmsweep.cli import run
from rmsweep.data import candidates, registry
from rmsweep.features import benchmarks, cache
from rmsweep.sweep import storage, triage

from feature_fixtures import FIXTURES, causal_lm_folder

pytestmark = pytest.mark.slow


def _instantiated_params_b(folder) -> float:
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters()) / 1e9


def test_features_then_triage_of_a_model_set(local_ray, tmp_path, untrained_punkt, capsys):
    folders = {"qwen3-small": causal_lm_folder(tmp_path / "qwen3-small", "qwen3", chat_template=True),
               "granite-small": causal_lm_folder(tmp_path / "granite-small", "granite", chat_template=False),
               "gemma3-small": causal_lm_folder(tmp_path / "gemma3-small", "gemma3_text", chat_template=False)}
    runs = storage.Location(tmp_path / "runs")

    # Features of two architectures, every benchmark on its local copy; then the same again, all from the cache.
    args = ["--models", str(folders["qwen3-small"]), str(folders["granite-small"]), "--data-dir", str(FIXTURES),
            "--storage", runs.uri]
    assert features_cli.main(args) == 0
    assert "0 of 8 measurements from the cache" in capsys.readouterr().out
    stored = cache.records(runs)
    assert len(stored) == 8 and set(stored["benchmark"]) == set(benchmarks.BENCHMARKS)
    assert stored["value"].between(0, 100).all() and not stored["rehearsal"].any()
    granite = stored[stored["model"] == "granite-small"].set_index("benchmark")["settings"]
    assert granite["ifeval"].endswith("no chat template: raw prompt")
    files = {path: path.stat().st_mtime_ns for path in (tmp_path / "runs" / "features").glob("*-*-*.json")}
    assert features_cli.main(args) == 0
    second = capsys.readouterr().out
    assert "8 of 8 measurements from the cache" in second and "measuring" not in second
    assert {path: path.stat().st_mtime_ns for path in files} == files

    # Pin the lowest of the three candidates ranked so far: a fourth can only push it further down.
    registry_model = "Llama-3.1-8B-Instruct"  # 8B parameters, IFEval 78.6: predicted far above the small ones
    facts = {registry_model: candidates.from_registry(registry.model(registry_model)),
             **{name: candidates.read(candidates.Entry(name, str(folders[name])))
                for name in ("qwen3-small", "granite-small")}}
    pinned = triage.rank(facts, "bt", runs).fitted["ranking"][-1]["name"]

    (tmp_path / "set.yaml").write_text(
        f"models:\n  - {{name: {registry_model}, source: meta-llama/Llama-3.1-8B-Instruct}}\n"
        + "".join(f"  - {{name: {name}, source: {name}, stage: sft}}\n" for name in folders))
    status = run.main(["--model-set", str(tmp_path / "set.yaml"), "--triage", "2", "--pin", pinned,
                       "--features-data-dir", str(FIXTURES), "--scale", "tiny", "--rm-type", "bnrm", "--bt-loss",
                       "scaled", "--space", "paper-bt", "--sampler", "grid", "--num-samples", "1",
                       "--keep-checkpoints", "none", "--storage", runs.uri])
    assert status == 0
    run_dir = tmp_path / "runs" / "set-bnrm-paper-bt-tiny"
    sweep = json.loads((run_dir / "sweep.json").read_text())
    ranked = [row["name"] for row in sweep["triage"]["ranking"]]
    assert sorted(ranked) == sorted([registry_model, *folders])  # gemma3-small measured by the triage itself
    swept = set(ranked[:2]) | {pinned}
    assert len(swept) == 3 and set(sweep["models"]) == swept and sweep["triage"]["pinned"] == [pinned]
    # A registry model and two local checkpoints of architectures it lacks, one at least without a chat template.
    assert ranked[0] == registry_model and len(swept & set(folders)) == 2
    assert sweep["triage"]["values"]["measured_for"] == sorted(folders)  # and it says so
    best = pd.read_csv(run_dir / "best_per_model.csv").set_index("model")
    trials = pd.read_csv(run_dir / "trials.csv")
    assert set(best.index) == swept and len(trials) == 3
    # BNRM on the paper's grid (a point of it for each model), every model learning; the checkpoints scored, then
    # deleted.
    grid = {5e-4, 6e-4, 7e-4, 8e-4, 9e-4, 1e-3, 2e-3, 3e-3, 4e-3, 5e-3}
    assert set(trials["lr"]) <= grid and set(trials["epochs"]) == {1}
    assert (best["val_accuracy"] >= 0.8).all() and (best["rewardbench"] >= 0.7).all()
    assert not (run_dir / "checkpoints").exists() and trials["checkpoint"].isna().all()
    assert best["checkpoint"].isna().all()
    assert sweep["bt_variant"] == "scaled" and sweep["rm_type"] == "bnrm" and sweep["sampler"] == "grid"
    assert sweep["space"]["file"].endswith("paper-bt.yaml")
    for name in swept & set(folders):  # facts read from the config: the instantiated model's parameters
        assert best.loc[name, "params_b"] == pytest.approx(_instantiated_params_b(folders[name]), rel=1e-9)
        assert best.loc[name, "chat_format"] == ("template" if name == "qwen3-small" else "plain")
    report = (run_dir / "report.md").read_text()
    assert "## Triage: predicted before training, achieved after" in report
    left_out = next(name for name in ranked if name not in swept)
    section = report.split("## Triage")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert "False" in rows[left_out] and all("True" in rows[name] for name in swept)
    assert "plain format" in report
