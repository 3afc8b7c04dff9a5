"""Bad input exits 2 with one line on stderr and writes nothing."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rmsweep.cli.run_args import parse_args
from rmsweep.sweep import placement, plan, spaces

from cli_runner import run_main


def run_cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "rmsweep.run", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def run_in_process(*args, cwd):
    """Where Ray is started: on this module's (local_ray), as a test that started it already."""
    from rmsweep.cli import run

    return run_main(run.main, *args, cwd=cwd)


def test_list_families(tmp_path):
    result = run_cli("--list-families", cwd=tmp_path)
    assert result.returncode == 0
    assert "gemma2" in result.stdout and "google/gemma-2-2b-it" in result.stdout


# Run as a user's shell runs them, in a fresh process: argparse's own errors, the hub, pyarrow's filesystems.
@pytest.mark.parametrize("args, message", [
    (["--family", "gema2", "--scale", "tiny"], "unknown family 'gema2'; did you mean 'gemma2'?"),
    (["--family", "gemma2", "--scale", "tiny", "--storage", "/proc/rmsweep"], "storage /proc/rmsweep is not writable"),
    (["--family", "gemma2", "--scale", "tiny", "--rm-type", "nosuch"], "argument --rm-type: invalid choice"),
    (["--family", "gemma2", "--scale", "tiny", "--seed", "notanumber"], "argument --seed: invalid int value"),
    (["--family", "gemma2"], "--scale tiny"),  # real checkpoints, hub unreachable
    (["--family", "gemma2", "--scale", "tiny", "--storage", "ftp://host/runs"], "Unrecognized filesystem type"),
    (["--family", "gemma2", "--scale", "tiny", "--storage", "hdfs://nowhere:1/runs"], "storage hdfs://nowhere:1/runs"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    storage = [] if "--storage" in args else ["--storage", str(tmp_path / "runs")]
    result = run_cli(*args, *storage, cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "runs").exists()


# The same checks through `run.main` in this process (a fresh one per case would cost seconds each).
@pytest.mark.parametrize("args, message", [
    (["--family", "gemma2", "--models", "Qwen2.5-7B-Instruct", "--scale", "tiny"], "is not in family"),
    (["--family", "gemma2", "--scale", "tiny", "--num-samples", "0"], "--num-samples must be positive"),
    (["--family", "gemma2", "--scale", "tiny", "--workers-per-trial", "3"], "not a multiple"),
    (["--family", "gemma2", "--scale", "tiny", "--data-dir", "."], "--data-dir has no effect with --scale tiny"),
    (["--family", "gemma2", "--scale", "tiny", "--model-dir", "."], "--model-dir has no effect with --scale tiny"),
    (["--family", "gemma2", "--scale", "tiny", "--space", "my.yaml"], "no search space file my.yaml"),
    (["--family", "gemma2", "--scale", "tiny", "--rm-type", "regression", "--bt-loss", "scaled"],
     "apply to bt and bnrm"),
    (["--family", "gemma2", "--scale", "tiny", "--space", "paper-dpo"], "no search space 'paper-dpo'"),
    (["--family", "gemma2", "--scale", "tiny", "--sampler", "grid"], "needs lr as a list of values"),
    (["--family", "gemma2", "--scale", "tiny", "--space", "rewardbench2", "--sampler", "grid", "--num-samples", "20"],
     "exceeds the 9 points"),
    (["--family", "gemma2", "--space", "paper-regression"], "helpsteer2 holds ratings, but a bt RM trains on pairs"),
    (["--family", "gemma2", "--scale", "tiny", "--resume"], "nothing to resume: no sweep at"),
    (["--family", "gemma2", "--scale", "tiny", "--resume", "--overwrite"], "pass one of them"),
    (["--family", "gemma2", "--scale", "tiny", "--max-failures", "-1"], "--max-failures must be >= 0"),
    (["--family", "gemma2", "--scale", "tiny", "--gpu-memory-gb", "0"], "--gpu-memory-gb must be positive"),
    (["--family", "gemma2", "--scale", "tiny", "--gpus-per-worker", "-1"], "--gpus-per-worker must be >= 0"),
    (["--family", "gemma2", "--scale", "tiny", "--max-concurrent-trials", "0"], "--max-concurrent-trials must be"),
    (["--family", "gemma2", "--scale", "tiny", "--attention", "flash_attention_2"], "needs the flash-attn package"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing_in_process(tmp_path, monkeypatch, capsys, args,
                                                                       message):
    from rmsweep.cli import run

    monkeypatch.chdir(tmp_path)
    assert run.main([*args, "--storage", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not (tmp_path / "runs").exists()


def test_a_malformed_row_in_a_local_dataset_exits_2_naming_row_and_column(tmp_path):
    fixtures = Path(__file__).parent / "fixtures"
    rows = (fixtures / "helpsteer2-preference.jsonl").read_text().splitlines()
    rows[2] = rows[2].replace('"preference_strength": 0', '"preference_strength": 9')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "helpsteer2-preference.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "data" / "rewardbench.jsonl").write_text((fixtures / "rewardbench.jsonl").read_text())
    space = yaml.safe_load((spaces.DEFAULT_DIR / "default.yaml").read_text())
    del space["by_scale"]["tiny"]["data"]  # tiny models, but the paper's data from --data-dir
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "default.yaml").write_text(yaml.safe_dump(space))
    result = run_cli("--family", "gemma2", "--scale", "tiny", "--search-spaces", str(tmp_path / "spaces"),
                     "--data-dir", str(tmp_path / "data"), "--storage", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "helpsteer2-preference.jsonl: row 3: column 'preference_strength': expected an integer -3..3, got 9" in error
    assert not (tmp_path / "runs").exists()


def test_rm_type_help_and_loss_choices_agree():
    from rmsweep import config
    from rmsweep.model import losses

    assert config.BT_VARIANTS == losses.BT_VARIANTS


def test_existing_run_directory_is_not_replaced(tmp_path):
    (tmp_path / "runs" / "gemma2-bt-tiny").mkdir(parents=True)
    result = run_cli("--family", "gemma2", "--scale", "tiny", "--storage", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr


def test_an_impossible_placement_exits_2_before_any_trial(local_ray, tmp_path):
    # This machine's local Ray cluster has no GPU: a worker asking for 4 can never be placed.
    result = run_in_process("--family", "gemma2", "--scale", "tiny", "--gpus-per-worker", "4",
                            "--storage", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    # One line, without a traceback.
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith("rmsweep.run: error: gemma-2-9b-it: no node offers one worker's 1 CPU and 4 GPU")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "gemma2-bt-tiny").exists()


def test_flex_attention_on_cpu_workers_exits_2_before_any_trial(local_ray, tmp_path):
    # PyTorch's FlexAttention has no backward pass on CPUs, and this machine's Ray cluster has no GPU.
    result = run_in_process("--family", "gemma2", "--scale", "tiny", "--attention", "flex_attention",
                            "--storage", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "rmsweep.run: error: --attention flex_attention trains on GPUs only")
    assert not (tmp_path / "runs" / "gemma2-bt-tiny").exists()


def test_the_data_seed_is_the_seed_unless_set_apart(tmp_path, monkeypatch):
    from rmsweep.cli import run
    from rmsweep.data import sources

    seeds = []

    def load(spec, rm_type, data_dir, seed):
        seeds.append(seed)
        raise sources.DataError("stopped once the data's seed is known")

    monkeypatch.setattr(sources, "load", load)
    common = ["--family", "gemma2", "--scale", "tiny", "--storage", str(tmp_path), "--seed", "3"]
    assert run.main(common) == 2 and run.main([*common, "--data-seed", "7"]) == 2
    assert seeds == [3, 7]


def test_real_models_shapes_are_read_for_the_placement(tmp_path):
    from transformers import AutoConfig


    for name, layers in (("gemma-2-2b-it", 2), ("gemma-2-9b-it", 3)):
        AutoConfig.for_model("gemma2", num_hidden_layers=layers, hidden_size=32).save_pretrained(tmp_path / name)
    request = plan.resolve(parse_args(["--family", "gemma2", "--model-dir", str(tmp_path),
                                       "--storage", str(tmp_path / "runs")]))
    assert request.model_shapes == {"gemma-2-2b-it": placement.ModelShape(layers=2, hidden_size=32),
                                    "gemma-2-9b-it": placement.ModelShape(layers=3, hidden_size=32)}
    assert plan.resolve(parse_args(["--family", "gemma2", "--scale", "tiny", "--storage",
                                    str(tmp_path / "runs")])).model_shapes == {}


def test_a_space_given_as_a_path_and_a_dry_run_that_writes_nothing(local_ray, tmp_path):
    own = yaml.safe_load((spaces.DEFAULT_DIR / "paper-bt.yaml").read_text())
    own["epochs"] = [1, 2]
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(own))
    result = run_in_process("--family", "gemma2", "--scale", "tiny", "--space", str(tmp_path / "mine.yaml"),
                            "--sampler", "grid", "--dry-run", "--storage", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "20 trials per model (the grid)" in result.stdout
    assert f"search space {tmp_path / 'mine.yaml'}" in result.stdout
    assert "gemma-2-9b-it: 1 worker(s) x 1 CPU 0 GPU, ddp" in result.stdout and "dry run" in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--models", "./nowhere"], "./nowhere: no such folder"),
    (["--models", "gema-2-2b-it"], "unknown model 'gema-2-2b-it'; did you mean 'gemma-2-2b-it'?"),
    (["--models", "noconfig"], "noconfig: cannot read the config of"),
    (["--models", "vision"], "vision: architecture 'clip_vision_model' has neither"),
    (["--models", "Qwen/Qwen3-4B"], "Qwen3-4B: cannot read the config of Qwen/Qwen3-4B (not in the local hub cache)"),
    (["--models", "qwen3-small", "gemma-2-2b-it", "./qwen3-small"], "two base models are named 'qwen3-small'"),
    (["--model-set", "broken.yaml"], "broken.yaml: not valid YAML"),
    (["--model-set", "renamed.yaml"],
     "renamed.yaml: google/gemma-2-2b-it is the registry's 'gemma-2-2b-it': name it so"),
    (["--model-set", "set.yaml", "--family", "gemma2"], "--model-set names the models itself"),
    ([], "name the base models: --family KEY, --models"),
    (["--model-set", "set.yaml", "--pin", "mine"], "--pin keeps candidates through --triage"),
    (["--model-set", "set.yaml", "--triage", "0"], "--triage must be positive"),
    (["--model-set", "set.yaml", "--triage", "1", "--features-data-dir", "nowhere"], "--features-data-dir nowhere"),
])
def test_bad_candidates_exit_2_with_one_line_naming_them_and_write_nothing(tmp_path, monkeypatch, capsys, args,
                                                                         message):
    from transformers import AutoConfig

    from rmsweep.cli import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))  # nothing cached
    AutoConfig.for_model("qwen3", num_hidden_layers=2, hidden_size=64).save_pretrained(tmp_path / "qwen3-small")
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "vision").mkdir()
    (tmp_path / "vision" / "config.json").write_text('{"model_type": "clip_vision_model"}')
    (tmp_path / "broken.yaml").write_text("models: [")
    (tmp_path / "renamed.yaml").write_text("models:\n  - {name: baseline, source: google/gemma-2-2b-it}\n")
    (tmp_path / "set.yaml").write_text("models:\n  - {name: mine, source: qwen3-small}\n")
    assert run.main([*args, "--scale", "tiny", "--storage", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not (tmp_path / "runs").exists()


def test_a_triage_dry_run_ranks_the_candidates_and_plans_the_top_ones_plus_the_pinned(local_ray, tmp_path):
    """Registry models only (their features are published): nothing to measure; the plan names the top one and the
    pinned one."""
    (tmp_path / "set.yaml").write_text("models:\n" + "".join(
        f"  - {{name: {name}, source: {name}}}\n"
        for name in ("Qwen2.5-0.5B-Instruct", "Llama-3.1-8B-Instruct", "gemma-2-2b-it")))
    result = run_in_process("--model-set", "set.yaml", "--scale", "tiny", "--triage", "1", "--pin",
                            "Qwen2.5-0.5B-Instruct", "--dry-run", "--storage", "runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    triage_lines = [line for line in result.stdout.splitlines() if "triage:" in line]
    assert len(triage_lines) == 3 and "Llama-3.1-8B-Instruct" in triage_lines[0] and "swept" in triage_lines[0]
    assert "plan: 2 base model(s)" in result.stdout and "dry run" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_a_pin_that_is_not_a_candidate_is_named():
    from rmsweep.sweep import triage

    ranking = triage.Ranking({"status": "fitted", "ranking": [{"name": "a"}, {"name": "b"}]}, {})
    assert triage.choose(ranking, 1, ["b"], ["a", "b"]) == ["a", "b"]
    with pytest.raises(triage.TriageError, match="--pin 'nobody' is not one of the candidates"):
        triage.choose(ranking, 1, ["nobody"], ["a", "b"])
