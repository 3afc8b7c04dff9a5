"""The README's cluster flow on a local `ray start --head` cluster with Ray 2.60's token authentication, two
sweeps sharing it. `ray stop` ends every Ray on the machine: this module keeps no Ray of its own running."""
import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import ray

from ledger_polling import poll_ledger

pytestmark = pytest.mark.slow
PYTHON = sys.executable
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status(storage: Path, name: str) -> str:
    result = subprocess.run([PYTHON, "-m", "rmsweep.status", "--storage", str(storage), "--name", name],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_readme_cluster_flow_with_token_authentication_and_two_sweeps_sharing_the_cluster(tmp_path):
    """`ray start --head` with token authentication; `ray job submit` of a sweep; a second sweep's driver on the
    same cluster (RAY_ADDRESS, the token but no RAY_AUTH_MODE: rmsweep sets it); `rmsweep.status` while they
    run; both finish, the second within half the cluster; compute counts only the time trials held their CPUs."""
    assert not ray.is_initialized()  # `ray stop` would end it, and its driver with it (this process)
    token_file = tmp_path / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    gcs_port, dashboard_port = _free_port(), _free_port()
    storage = tmp_path / "runs"
    sweep = ["--family", "gemma2", "--models", "gemma-2-2b-it", "--scale", "tiny", "--storage", str(storage)]
    subprocess.run([RAY, "start", "--head", f"--port={gcs_port}", f"--dashboard-port={dashboard_port}",
                    "--num-cpus=2", "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
    try:
        job = subprocess.Popen([RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard_port}", "--",
                                PYTHON, "-m", "rmsweep.run", *sweep, "--num-samples", "2", "--name", "first"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        running = poll_ledger(lambda: pd.read_csv(storage / "first" / "trials.csv"),
                              lambda ledger: ledger if ledger["status"].eq("running").any() else None,
                              still_running=lambda: job.poll() is None)
        assert running is not None, job.communicate()[0][-3000:]
        while_running = _status(storage, "first")
        assert "first: running" in while_running and "running (as of each trial's latest evaluation)" in while_running
        assert "0 GPU-hours" in while_running
        driver_env = {key: value for key, value in env.items() if key != "RAY_AUTH_MODE"}
        second = subprocess.run([PYTHON, "-m", "rmsweep.run", *sweep, "--num-samples", "1", "--name", "second"],
                                capture_output=True, text=True, timeout=600,
                                env={**driver_env, "RAY_ADDRESS": f"127.0.0.1:{gcs_port}"})
        assert second.returncode == 0, second.stderr[-3000:]
        assert "sharing the cluster with 1 other rmsweep sweep(s): first" in second.stdout
        output = job.communicate(timeout=600)[0]
        assert job.returncode == 0 and "succeeded" in output, output[-3000:]
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
    concurrency = {name: json.loads((storage / name / "sweep.json").read_text())["max_concurrent_trials"]
                   for name in ("first", "second")}
    assert concurrency == {"first": 2, "second": 1}
    for name in ("first", "second"):
        trials = pd.read_csv(storage / name / "trials.csv")
        assert len(trials) == {"first": 2, "second": 1}[name] and (trials["held_seconds"] > 0).all()
        assert (trials["wait_seconds"] + trials["held_seconds"] - trials["wall_seconds"]).abs().max() <= 0.2
        worker_hours = (trials["held_seconds"] * trials["workers"]).sum() / 3600
        finished = _status(storage, name)
        assert f"{name}: finished" in finished and f"{len(trials)} of {len(trials)} finished" in finished
        assert f"({worker_hours:.2f} CPU worker-hours)" in finished
    # The second sweep's first trial waited for a CPU the first sweep's two trials held.
    assert pd.read_csv(storage / "second" / "trials.csv")["wait_seconds"].max() > 5
