"""The benchmark scripts run and end with their RESULT line; the sweep benchmark's measure is right."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_sweep  # noqa: E402
import bench_trainer  # noqa: E402

from rmsweep.config import ModelSpec  # noqa: E402


def _result(command: list[str]) -> dict:
    finished = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    last = finished.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT "), last
    return dict(re.findall(r"(\w+)=(\S+)", last))


@pytest.mark.slow
def test_gpu_check_dry_run_runs_its_steps_and_the_trainer_benchmark(tmp_path):
    """scripts/gpu_check.sh --dry-run: the GPU machine's script at tiny shapes on the CPU, bench_trainer.py's
    contenders (TRL's included: the test extra installs it) compared in one run."""
    finished = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh"), "--dry-run", str(tmp_path)],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert "gpu tests: exit 0" in summary and "bench micro: exit 0" in summary, summary
    bench = (tmp_path / "bench_micro.log").read_text()
    assert "rmsweep, bf16 weights: skipped (GPU only)" in bench
    assert "rmsweep, FlexAttention packing: skipped (GPU only: PyTorch has no FlexAttention backward" in bench
    result = dict(re.findall(r"(\w+)=(\S+)", bench.strip().splitlines()[-1]))
    assert {"rmsweep_vs_trl", "shared_prompt_gain", "token_budget_gain", "rmsweep_val_accuracy",
            "trl_val_accuracy"} <= set(result)
    assert all(float(value) > 0 for value in result.values())
    assert "passed" in (tmp_path / "gpu_tests.log").read_text()


HIDE_PACKAGES = """import sys
from importlib.machinery import PathFinder

HIDDEN = {"ray", "optuna", "datasets", "trl"}


class Hiding(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] in HIDDEN else super().find_spec(name, path, target)


sys.meta_path = [Hiding if finder is PathFinder else finder for finder in sys.meta_path]
"""


def test_the_gpu_checks_run_where_ray_optuna_datasets_and_trl_are_not_installed(tmp_path):
    """As on the GPU machine: a sitecustomize hides the packages from this process and the contenders' own.
    bench_trainer runs; gpu_check.sh's GPU tests are collected."""
    (tmp_path / "sitecustomize.py").write_text(HIDE_PACKAGES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-q", "--collect-only", "-k",
         "gpu", "tests/test_packing.py", "tests/test_train.py", "tests/test_modeling.py"],
        capture_output=True, text=True, timeout=300, env=env, cwd=SCRIPTS.parent)
    assert collected.returncode == 0 and "gpu" in collected.stdout, collected.stdout[-2000:]
    finished = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_trainer.py"), "--preset", "micro", "--steps", "1", "--batch", "4",
         "--micro-batch", "2", "--max-length", "64", "--validation-pairs", "4", "--only", "rmsweep",
         "TRL RewardTrainer"], capture_output=True, text=True, timeout=300, env=env)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "TRL RewardTrainer: skipped (trl and datasets not installed)" in finished.stdout
    assert re.search(r"  rmsweep: [\d,]+ tokens/s", finished.stdout), finished.stdout


def test_a_warm_up_trial_runs_first_on_one_step_and_is_timed_apart(monkeypatch):
    """The FlexAttention contenders' kernels compile in it, not in the few measured steps."""
    trials = []

    def fit(config, data, report, device):
        trials.append(len(data["train"]))
        report({"out_of_memory": "", "diverged": False, "layout": "padded", "tokens_per_second": 100.0,
                "val_accuracy": 0.5}, None)
    monkeypatch.setattr(bench_trainer.loop, "fit_reward_model", fit)
    args = bench_trainer.parse_args(["--preset", "micro", "--steps", "4", "--batch", "8"])
    args.train_tokens = args.computed_tokens = 1000
    data = {"train": [{}] * 32, "validation": [{}] * 16}
    figures = bench_trainer.CONTENDERS["rmsweep, FlexAttention packing"](args, ModelSpec("tiny", "qwen2"), data)
    assert trials == [8, 32] and figures["warm_up_seconds"] >= 0 and figures["seconds"] == 10.0
    assert "warm_up_seconds" not in bench_trainer.CONTENDERS["rmsweep"](args, ModelSpec("tiny", "qwen2"), data)


def test_trainer_benchmark_skips_and_names_contenders_whose_packages_are_missing(monkeypatch):
    real_find_spec = bench_trainer.importlib.util.find_spec
    monkeypatch.setattr(bench_trainer.importlib.util, "find_spec",
                        lambda name: None if name == "trl" else real_find_spec(name))
    assert bench_trainer.runnable("TRL RewardTrainer", "cpu") == "trl not installed"
    assert bench_trainer.runnable("rmsweep", "cpu") == ""
    assert bench_trainer.runnable("rmsweep, bf16 weights", "cpu") == "GPU only"
    assert bench_trainer.runnable("rmsweep, shared prompt", "cpu") == "rmsweep's default here"
    assert bench_trainer.runnable("rmsweep, no shared prompt", "cuda") == "rmsweep's default here"


@pytest.mark.slow
def test_bench_overhead_measures_the_ray_layer():
    result = _result([str(SCRIPTS / "bench_overhead.py"), "--repeats", "1", "--train-pairs", "64"])
    assert float(result["in_process_seconds"]) > 0 and float(result["outside_loop_seconds"]) > 0


def test_sweep_benchmark_counts_steps_until_the_grids_best_is_reached():
    ledger = pd.DataFrame({"model": ["a", "b", "a", "b"], "steps": [64, 16, 64, 64],
                           "best_val_accuracy": [0.80, 0.70, 0.898, 0.91]})
    figures = bench_sweep.summarize(ledger, target=0.90, best_models={"b"})
    # 0.898 is within 0.5 points of 0.90: reached after 64 + 16 + 64 steps; b is the better model.
    assert figures["steps_to_reach"] == 144 and figures["trial_steps"] == 208
    assert figures["picked_model"] == "b" and figures["same_best_model"]
    never = bench_sweep.summarize(ledger.iloc[:2], target=0.90, best_models={"b"})
    assert never["steps_to_reach"] is None and not never["same_best_model"]


def test_sweep_benchmark_meets_the_target_only_cheaply_within_half_a_point_and_on_the_right_model():
    grid = pd.DataFrame({"model": ["a"] * 5 + ["b"] * 5, "steps": [64] * 10,
                         "best_val_accuracy": [0.80] * 5 + [0.90] * 5})  # 640 trial-steps, b best at 0.90
    ledgers = {
        "cheap": pd.DataFrame({"model": ["a", "b"], "steps": [64, 128], "best_val_accuracy": [0.8, 0.897]}),
        "too dear": pd.DataFrame({"model": ["a", "b"], "steps": [64, 192], "best_val_accuracy": [0.8, 0.9]}),
        "short": pd.DataFrame({"model": ["a", "b"], "steps": [64, 64], "best_val_accuracy": [0.8, 0.89]}),
        "wrong model": pd.DataFrame({"model": ["a", "b"], "steps": [64, 64], "best_val_accuracy": [0.9, 0.85]}),
    }
    table = bench_sweep.compare(grid, ledgers)
    assert table["met"].to_dict() == {"cheap": True, "too dear": False, "short": False, "wrong model": False}
    # What grid-rerun is judged by: the grid's answer held, at whatever cost.
    assert table["answer_held"].to_dict() == {"cheap": True, "too dear": True, "short": False, "wrong model": False}
    assert table.loc["cheap", "share_of_grid_steps"] == pytest.approx(0.3)
    assert table.loc["short", "val_gap_points"] == pytest.approx(1.0)


def test_trainer_benchmark_refuses_a_run_that_stopped_early(monkeypatch):
    """A trial out of memory reports accuracy 0 and the throughput of the steps it took: not a figure."""
    def out_of_memory_at_step_3(config, records, report, device):
        report({"step": 3, "total_steps": 32, "out_of_memory": "out of memory: bench", "diverged": False,
                "val_accuracy": 0.0, "tokens_per_second": 1000.0, "layout": "padded"}, None)

    monkeypatch.setattr(bench_trainer.loop, "fit_reward_model", out_of_memory_at_step_3)
    args = bench_trainer.parse_args([])
    args.train_tokens = 1000
    with pytest.raises(RuntimeError, match="stopped at step 3 of 32: out of memory: bench"):
        bench_trainer.run_rmsweep(args, spec=ModelSpec("tiny", "qwen2"), data={})
