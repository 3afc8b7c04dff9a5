"""Tiny sweeps through Ray Tune + Ray Train end to end, sharing one local Ray instance (2 CPUs)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import ray
import yaml
from ray.util.state import list_actors

from rmsweep.analysis import scoring
from rmsweep.cli import run
from rmsweep.sweep import spaces

from ledger_polling import poll_ledger

pytestmark = pytest.mark.slow


def _outputs(run_dir):
    for name in run.OUTPUTS:
        assert (run_dir / name).is_dir() if name.endswith("/") else (run_dir / name).is_file(), name
    best = pd.read_csv(run_dir / "best_per_model.csv")
    for model in best["model"]:  # every best checkpoint's per-completion scores, rescorable offline
        for benchmark in ("rewardbench", "rewardbench2"):
            rows = [json.loads(line) for line in (run_dir / "scores" / f"{model}-{benchmark}.jsonl").open()]
            overall = scoring.SCORERS[benchmark](rows)["overall"]
            assert overall == pytest.approx(best.loc[best["model"] == model, benchmark].iloc[0])
    return pd.read_csv(run_dir / "trials.csv"), best


def test_bradley_terry_sweep_of_a_family(local_ray, tmp_path, monkeypatch, capfd):
    secret = "hf_rmsweepTestTokenNeverWritten"
    monkeypatch.setenv("HF_TOKEN", secret)
    status = run.main(["--family", "gemma2", "--scale", "tiny", "--num-samples", "2", "--storage", str(tmp_path)])
    assert status == 0
    # The token is used from the environment only: in no output file, on neither stream.
    assert not [path for path in tmp_path.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert secret not in "".join(capfd.readouterr())
    run_dir = tmp_path / "gemma2-bt-tiny"
    trials, best = _outputs(run_dir)
    assert sorted(trials["model"].value_counts().to_dict().items()) == [("gemma-2-2b-it", 2), ("gemma-2-9b-it", 2)]
    assert set(trials["status"]) <= {"completed", "stopped_early"}
    assert (trials["steps"] <= trials["total_steps"]).all()
    assert trials["trial_id"].is_unique
    assert not trials["gradient_checkpointing"].any()  # auto, and no step ran out of memory
    # Gemma 2's eager attention takes the shared-prompt masks; every built-in pair shares its prompt.
    assert (trials["layout"] == "shared_prompt").all() and (trials["two_sequence_pairs"] == 0).all()
    assert not trials[["model", "lr", "epochs"]].duplicated().any()  # each trial its own sample
    assert set(best["model"]) == {"gemma-2-2b-it", "gemma-2-9b-it"}
    # They reach 0.945 and 0.952 (RewardBench 0.93-0.94, RewardBench 2 0.94-0.95): margins of 4-5 points.
    assert (best["val_accuracy"] >= 0.9).all()
    assert best[["chat", "chat_hard", "safety", "reasoning", "rewardbench"]].notna().all().all()
    assert (best["rewardbench"] >= 0.88).all()  # the saved checkpoint scores as well as the trained model
    assert (best["rewardbench2"] >= 0.88).all()  # chance is 0.25 (best of 4)
    # Only the best checkpoint of each trial is kept.
    assert len(list((run_dir / "checkpoints").rglob("model.safetensors"))) == len(trials)
    # Each (tokenizer, split) was tokenized into the storage's cache once, for every trial: both tiny twins are
    # gemma2 with the one tiny tokenizer, so two files (train and validation) serve all four trials.
    assert len(list((tmp_path / "token_cache").glob("*.parquet"))) == 2
    assert trials["tokens_per_second"].gt(0).all() and trials["nodes"].notna().all()
    assert list((run_dir / "tune").rglob("events.out.tfevents.*"))  # TensorBoard: tensorboard --logdir <run>/tune
    # Every evaluation of every trial: each trial's curve ends at its ledger row's step and peaks at its best.
    curves = pd.read_parquet(run_dir / "curves.parquet")
    for trial_id, curve in curves.groupby("trial_id"):
        row = trials.set_index("trial_id").loc[trial_id]
        assert curve["step"].is_monotonic_increasing and curve["step"].iloc[-1] == row["steps"]
        assert curve["val_accuracy"].max() == row["best_val_accuracy"] and curve["tokens"].is_monotonic_increasing
    assert set(curves["trial_id"]) == set(trials["trial_id"])
    sweep = json.loads((run_dir / "sweep.json").read_text())
    assert sweep["seed"] == sweep["data_seed"] == 0 and "ray" in sweep["versions"] and sweep["wall_seconds"] > 0
    assert sweep["hf_token"] == "<redacted>"
    report = (run_dir / "report.md").read_text()
    assert "Best trial per base model" in report
    assert "### lr and epochs sensitivity per base model" in report and "![" in report
    assert "### Not shown, for lack of data" in report and "needs results of both --rm-type bt" in report
    selector = json.loads((run_dir / "selector.json").read_text())
    assert selector["status"] == "fitted" and selector["fitted_on"].startswith("the paper's")


def test_regression_sweep_with_two_data_parallel_workers(local_ray, tmp_path):
    # Two workers per trial run DDP over gloo; train.py checks every rank holds the trial's one sample.
    status = run.main(["--family", "qwen2.5", "--models", "Qwen2.5-0.5B-Instruct", "--scale", "tiny", "--rm-type",
                       "regression", "--num-samples", "1", "--workers-per-trial", "2", "--cpus-per-worker", "0.5",
                       "--keep-checkpoints", "all", "--storage", str(tmp_path)])
    assert status == 0
    trials, best = _outputs(tmp_path / "qwen2.5-regression-tiny")
    # Every evaluation's checkpoint is kept: more than one per trial (a trial ASHA stops while it uploads may
    # leave one more than the ledger counts).
    kept = len(list((tmp_path / "qwen2.5-regression-tiny" / "checkpoints").rglob("model.safetensors")))
    assert kept >= (trials["steps"] // 16).sum() > len(trials)
    assert len(trials) == 1 and set(trials["rm_type"]) == {"regression"}
    assert set(trials["status"]) <= {"completed", "stopped_early"}
    assert best.loc[0, "val_accuracy"] >= 0.91 and best.loc[0, "rewardbench"] >= 0.92  # it reaches 0.965, 0.973
    # The attribute weights were searched on the validation pairs, and do at least as well there as the vector
    # the trial was validated with.
    weights = [float(w) for w in best.loc[0, "regression_weights"].split()]
    assert len(weights) == 5 and weights[4] <= 0
    assert best.loc[0, "weighted_val_accuracy"] >= best.loc[0, "val_accuracy"]


def test_a_diverging_trial_is_recorded_and_a_killed_worker_resumes_its_trial(local_ray, tmp_path):
    """Two trials at once: lr 1e6 turns the loss NaN after one step (the trial is recorded `diverged`, the sweep
    goes on); the other's training worker is SIGKILLed once it has evaluated twice: Ray Train restarts the worker
    group, the loop resumes at its latest checkpoint (its steps go on, not from 0) and the trial completes."""
    space = yaml.safe_load((spaces.DEFAULT_DIR / "paper-bt.yaml").read_text())
    space["by_scale"]["tiny"]["lr"] = [1e-3, 1e6]
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "diverge.yaml").write_text(yaml.safe_dump(space))
    run_dir = tmp_path / "gemma2-bt-diverge-tiny"
    killed = []

    def kill_the_worker_after_step_32():
        def running_past_step_32(ledger):
            return ledger if (ledger["status"].eq("running") & ledger["steps"].ge(32)).any() else None

        while not killed and poll_ledger(lambda: pd.read_csv(run_dir / "trials.csv"), running_past_step_32) is not None:
            for worker in list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]):
                os.kill(worker.pid, signal.SIGKILL)
                killed.append(worker.pid)

    killer = threading.Thread(target=kill_the_worker_after_step_32, daemon=True)
    killer.start()
    status = run.main(["--family", "gemma2", "--models", "gemma-2-2b-it", "--scale", "tiny", "--space", "diverge",
                       "--search-spaces", str(tmp_path / "spaces"), "--sampler", "grid", "--storage", str(tmp_path)])
    killer.join()
    assert killed and status == 0
    trials, best = _outputs(run_dir)
    assert trials.set_index("lr")["status"].to_dict() == {1e-3: "completed", 1e6: "diverged"}
    assert best.loc[0, "best_lr"] == 1e-3
    trial = trials.set_index("lr").loc[1e-3]
    assert trial["steps"] == trial["total_steps"] == 64
    progress = max((pd.read_csv(path) for path in (run_dir / "tune").rglob("progress.csv")), key=len)
    assert progress["step"].is_monotonic_increasing and progress["step"].is_unique  # no step taken twice
    assert progress["resumed_from_step"].iloc[0] == 0 and progress["resumed_from_step"].iloc[-1] >= 32
    assert len(list((run_dir / "checkpoints").rglob("model.safetensors"))) == 1  # still one checkpoint per trial
    assert not list((run_dir / "checkpoints").rglob("trainer_state.pt"))  # resume state gone once it finished


def test_a_killed_sweep_driver_is_resumed_without_running_a_finished_trial_again(local_ray, tmp_path, capsys):
    """The driver (another process on this module's Ray) is killed once a trial has finished and another has
    evaluated; --resume takes over its claim on the run directory, keeps the finished trials, continues the
    interrupted ones and runs the rest."""
    # rewardbench2's grid has 1-3 epoch points: trials long enough (64-192 steps) to be caught running.
    # One model, three trials, two at a time: once one has finished, another is caught running.
    args = ["--family", "gemma2", "--models", "gemma-2-2b-it", "--scale", "tiny", "--space", "rewardbench2",
            "--sampler", "grid", "--num-samples", "3", "--storage", str(tmp_path)]
    run_dir = tmp_path / "gemma2-bt-rewardbench2-tiny"
    driver = subprocess.Popen([sys.executable, "-m", "rmsweep.run", *args],
                              env={**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def one_finished_and_one_past_step_16(ledger):
        finished, running = ledger["status"] != "running", ledger["status"].eq("running")
        return ledger if finished.any() and (running & ledger["steps"].ge(16)).any() else None

    before = poll_ledger(lambda: pd.read_csv(run_dir / "trials.csv"), one_finished_and_one_past_step_16,
                         still_running=lambda: driver.poll() is None)
    if before is not None:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert before is not None, "the sweep ended before it could be interrupted"
    # Ray ends the killed driver's actors and worker groups: wait until their CPUs are free again.
    deadline = time.time() + 120
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(1)

    assert run.main(args) == 2  # the run directory exists: not replaced without --overwrite or --resume
    assert run.main([*args, "--resume", "--seed", "1"]) == 2  # not the same sweep
    capsys.readouterr()
    assert run.main([*args, "--resume"]) == 0
    assert f"taking over the claim of a sweep that is gone (pid {driver.pid} on" in capsys.readouterr().out
    trials, best = _outputs(run_dir)
    assert len(trials) == 3 and trials["trial_id"].is_unique and set(trials["status"]) <= {"completed",
                                                                                          "stopped_early"}
    finished_before = before[before["status"] != "running"].set_index("trial_id")
    kept = trials.set_index("trial_id").loc[finished_before.index]
    assert (kept["wall_seconds"] == finished_before["wall_seconds"]).all()  # kept, not run again
    interrupted = before[before["status"] == "running"]
    resumed = trials.set_index("trial_id").loc[interrupted["trial_id"]]
    assert (resumed["steps"] >= interrupted.set_index("trial_id")["steps"]).all()  # went on, kept their ids
    assert not trials[["model", "lr", "epochs"]].duplicated().any()  # the grid was not walked twice
    sweep = json.loads((run_dir / "sweep.json").read_text())
    assert len(sweep["resumed"]) == 1 and "finished" in sweep


def test_a_budget_aware_sweep_spends_within_its_budget(local_ray, tmp_path):
    status = run.main(["--family", "qwen2.5", "--models", "Qwen2.5-0.5B-Instruct", "Qwen2.5-7B-Instruct", "--scale",
                       "tiny", "--budget", "192", "--storage", str(tmp_path)])
    assert status == 0
    run_dir = tmp_path / "qwen2.5-bt-tiny"
    trials, best = _outputs(run_dir)
    # A trial is at most 2 epochs of 64 steps; one is handed out only while the budget still holds a full one.
    assert trials["steps"].sum() <= 192 and len(trials) >= 1
    assert trials["model"].iloc[0] == "Qwen2.5-7B-Instruct"  # the selector's favourite goes first
    sweep_record = json.loads((run_dir / "sweep.json").read_text())
    assert sweep_record["budget_steps"] == 192
    assert set(sweep_record["priors"]) == {"Qwen2.5-0.5B-Instruct", "Qwen2.5-7B-Instruct"}
    report = (run_dir / "report.md").read_text()
    assert "## Budget and time per base model" in report and "trial_steps" in report
