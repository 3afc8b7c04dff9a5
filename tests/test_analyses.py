import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rmsweep.analysis import paper_analyses
from rmsweep.sweep import storage

from cli_runner import run_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return paper_analyses.paper_results()


def test_paper_results_hold_both_rm_types(paper):
    assert sorted(paper["rm_type"].value_counts().to_dict().items()) == [("bt", 40), ("regression", 42)]


def test_table1_stage_deltas_match_the_paper(paper):
    table = paper_analyses.stage_deltas(paper).table
    regression = table[table["rm_type"] == "regression"].set_index("comparison")["delta_percent"].round(1)
    assert regression["sft vs base"] == 15.5
    assert regression["dpo vs sft"] == -3.1
    assert regression["rlvr vs sft"] == -4.8


def test_size_group_gains_compare_the_best_with_the_groups_llama(paper):
    table = paper_analyses.size_group_gains(paper).table
    row = table[(table["rm_type"] == "regression") & (table["size_group"] == ">=6B")].iloc[0]
    assert (row["best"], row["llama"]) == ("gemma-2-9b-it", "Llama-3.1-8B-Instruct")
    assert row["gain_percent"] == pytest.approx(100 * (88.1 / 83.2 - 1))
    assert list(table["size_group"][:3]) == ["<3B", "3-6B", ">=6B"]


def test_bt_vs_regression_pairs_models_with_both(paper):
    table = paper_analyses.bt_vs_regression(paper).table
    assert len(table) == 40
    row = table.set_index("name").loc["gemma-2-9b-it"]
    assert row["regression_minus_bt"] == pytest.approx(88.1 - 72.3)


def test_analyses_say_what_data_they_need(tmp_path):
    one_sweep = pd.DataFrame({"name": ["gemma-2-9b-it", "gemma-2-2b-it"], "family": "gemma2",
                              "size_group": [">=6B", "<3B"], "params_b": [9.24, 2.61], "stage": "instruct",
                              "rm_type": "bt", "score": [0.9, 0.8]})
    assert "Llama-3.x" in paper_analyses.size_group_gains(one_sweep).needs
    assert "two stages" in paper_analyses.stage_deltas(one_sweep).needs
    assert "--rm-type regression" in paper_analyses.bt_vs_regression(one_sweep).needs
    assert "trials.csv" in paper_analyses.lr_sensitivity(None, storage.Location(tmp_path)).needs
    curve = paper_analyses.scale_curve(one_sweep, storage.Location(tmp_path))
    assert curve.needs is None and (tmp_path / curve.plot).stat().st_size > 0


def test_reproduce_paper_script(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce_paper.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("exact") == 3 and "DIFFERS" not in result.stdout
    assert "selector_out_of_fold" in result.stdout and "paper: +18%" in result.stdout
    text = (tmp_path / "report.md").read_text()
    assert "![" in text and (tmp_path / "coverage.png").exists() and (tmp_path / "scale_curve.png").exists()


def run_select(*args, cwd):
    from rmsweep.cli import select

    return run_main(select.main, *args, cwd=cwd)


def test_select_cli_on_the_paper(tmp_path):
    """As a user runs it: `python -m rmsweep.select`."""
    result = subprocess.run([sys.executable, "-m", "rmsweep.select", "--paper", "--target", "bt", "--features",
                             "ifeval", "params_b", "--out", "s.json"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "out-of-fold" in result.stdout and "ranking of candidates" not in result.stdout  # all were trained
    assert (tmp_path / "s.json").exists()


def test_select_cli_ranks_a_users_candidates_file(tmp_path):
    pd.DataFrame({"name": ["new-small", "new-large"], "ifeval": [40.0, 80.0], "params_b": [1.0, 9.0]}).to_csv(
        tmp_path / "candidates.csv", index=False)
    result = run_select("--paper", "--features", "ifeval", "params_b", "--candidates", "candidates.csv",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ranking = json.loads((tmp_path / "selector.json").read_text())["ranking"]
    assert [row["name"] for row in ranking] == ["new-large", "new-small"]


def test_select_cli_ranks_a_model_set_with_intervals_and_names_what_the_others_lack(tmp_path):
    """Registry models (by name or hub id) come with their published features; a model the registry does not
    know has its parameter count read from its config, and is listed with the features it lacks, not ranked;
    once rmsweep.features has measured them (here: a stored record), it is ranked, and the output says its
    values were measured. A registry model goes by its registry name, and is left out of the selector's fit, so
    that its prediction never saw its published score."""
    from transformers import AutoConfig

    from rmsweep.features import benchmarks, cache
    from rmsweep.features.measure import FeatureModel
    from rmsweep.sweep import storage

    AutoConfig.for_model("qwen3", num_hidden_layers=2, hidden_size=64).save_pretrained(tmp_path / "checkpoints/ours")
    (tmp_path / "set.yaml").write_text(
        "models:\n"
        "  - {name: Qwen2.5-1.5B-Instruct, source: Qwen/Qwen2.5-1.5B-Instruct}\n"
        "  - {name: gemma-2-9b-it, source: google/gemma-2-9b-it}\n"
        "  - {name: ours, source: ./checkpoints/ours}\n")
    args = ("--paper", "--target", "bt", "--features", "ifeval", "params_b", "--candidates", "set.yaml")
    result = run_select(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    fitted = json.loads((tmp_path / "selector.json").read_text())
    assert {row["name"] for row in fitted["ranking"]} == {"Qwen2.5-1.5B-Instruct", "gemma-2-9b-it"}
    assert all(row["low"] < row["predicted"] < row["high"] for row in fitted["ranking"])
    assert fitted["unranked"] == [{"name": "ours", "missing": ["ifeval"]}]
    assert "cannot rank ours: no ifeval" in result.stdout and "80% from the out-of-fold" in result.stdout
    assert fitted["feature_values"] == {"values": "published (the registry's)"}
    assert run_select(*args[:-2], cwd=tmp_path).returncode == 0
    assert json.loads((tmp_path / "selector.json").read_text())["n_models"] == fitted["n_models"] + 2

    ours = FeatureModel("ours", str(tmp_path / "checkpoints" / "ours"))
    bench = benchmarks.benchmark("ifeval")
    cache.write(storage.Location(tmp_path / "rmsweep_runs"), "ours",
                cache.key(ours, bench, None, "0.4.13", None, None), {"value": 70.0, "items": 541, "settings": ""})
    result = run_select(*args, cwd=tmp_path)
    fitted = json.loads((tmp_path / "selector.json").read_text())
    assert {row["name"] for row in fitted["ranking"]} == {"Qwen2.5-1.5B-Instruct", "gemma-2-9b-it", "ours"}
    assert fitted["feature_values"]["measured_for"] == ["ours"] and "measured" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--paper", "--candidates", "absent.yaml"], "absent.yaml: no such file"),
    (["--paper", "--candidates", "set.yaml"], "ours: ./nowhere is neither a folder nor a hub id"),
    (["--paper", "--features", "nope"], "unknown feature column 'nope'"),
    (["--results", "missing.csv"], "cannot read missing.csv"),
    (["--paper", "--folds", "1"], "--folds must be >= 2"),
])
def test_select_cli_bad_input_exits_2(tmp_path, args, message):
    (tmp_path / "set.yaml").write_text("models:\n  - {name: ours, source: ./nowhere}\n")
    result = run_select(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
