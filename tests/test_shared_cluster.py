"""Sweeps as people run them: Ctrl-C, then --resume; one run per name."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import ray

from rmsweep.cli import run

from ledger_polling import poll_ledger

pytestmark = pytest.mark.slow
PYTHON = sys.executable
RAY = str(Path(sys.executable).parent / "ray")


def test_ctrl_c_stops_at_the_next_evaluation_and_resume_runs_every_trial_once(local_ray, tmp_path):
    # Two trials of 64 steps at once, evaluated every 16: caught running, stopped at an evaluation, resumed.
    args = ["--family", "gemma2", "--models", "gemma-2-2b-it", "--scale", "tiny", "--space", "paper-bt",
            "--sampler", "grid", "--num-samples", "2", "--storage", str(tmp_path)]
    run_dir = tmp_path / "gemma2-bt-paper-bt-tiny"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    driver = subprocess.Popen([PYTHON, "-m", "rmsweep.run", *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)

    def a_trial_past_step_16(ledger):
        return ledger if (ledger["status"].eq("running") & ledger["steps"].ge(16)).any() else None

    before = poll_ledger(lambda: pd.read_csv(run_dir / "trials.csv"), a_trial_past_step_16,
                         still_running=lambda: driver.poll() is None)
    assert before is not None, "the sweep ended before it could be interrupted"
    # A second sweep of the same name exits at once, naming the running one and how to watch it.
    second = subprocess.run([PYTHON, "-m", "rmsweep.run", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert f"in use by a running sweep (pid {driver.pid} on" in second.stderr and "rmsweep.status" in second.stderr

    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == run.INTERRUPTED, err
    resume = f"python -m rmsweep.run {' '.join(args)} --resume"
    assert resume in out and "Tuner.restore" not in out + err
    report = (run_dir / "report.md").read_text()
    assert "Interrupted after" in report and "of 2 trials" in report and resume in report
    ledger = pd.read_csv(run_dir / "trials.csv")
    assert set(ledger["status"]) <= {"completed", "stopped_early", "interrupted"} and "interrupted" in set(
        ledger["status"])
    assert "interrupted" in json.loads((run_dir / "sweep.json").read_text()) and not (run_dir / "claim.json").exists()

    assert run.main([*args, "--resume"]) == 0
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 2 and trials["trial_id"].is_unique and set(trials["status"]) <= {"completed",
                                                                                          "stopped_early"}
    stopped = ledger[ledger["status"] == "interrupted"].set_index("trial_id")
    assert (trials.set_index("trial_id").loc[stopped.index, "steps"] >= stopped["steps"]).all()  # went on
    assert "### lr and epochs sensitivity" in (run_dir / "report.md").read_text()


def test_status_of_a_run_that_does_not_exist_exits_2(tmp_path):
    result = subprocess.run([PYTHON, "-m", "rmsweep.status", "--storage", str(tmp_path), "--name", "no-such-run"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no sweep at" in result.stderr
