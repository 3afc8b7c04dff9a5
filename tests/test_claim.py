"""One sweep per run directory: the claim is created exclusively (a local folder, S3), a live one refuses a
second sweep, a stale one (its driver gone) is taken over by --resume only."""
import json
import logging
import os
import subprocess
import time

import boto3
import pytest
from moto.server import ThreadedMotoServer

from rmsweep.sweep import claim, storage


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _plant(run_dir: storage.Location, **changes) -> None:
    run_dir.write_text(claim.FILE, json.dumps({"host": "elsewhere", "pid": 1, "started": time.time(),
                                               "token": "theirs", "heartbeat": time.time(), **changes}))


def test_a_live_claim_refuses_a_second_sweep_and_is_released_at_the_end(tmp_path):
    run_dir = storage.Location(tmp_path)
    mine = claim.take(run_dir, resume=False)
    assert claim.read(run_dir) == mine and not mine.is_stale()
    for resume in (False, True):
        with pytest.raises(claim.Claimed, match=f"in use by a running sweep \\(pid {os.getpid()} on"):
            claim.take(run_dir, resume=resume)
    heartbeat = claim.Heartbeat(run_dir, mine)
    heartbeat.release()
    assert claim.read(run_dir) is None


@pytest.mark.parametrize("stale", [dict(pid=None), dict(host="elsewhere", heartbeat=0.0)],
                         ids=["process-gone-on-this-host", "no-heartbeat-from-another-host"])
def test_a_stale_claim_is_taken_over_by_resume_only(tmp_path, caplog, stale):
    run_dir = storage.Location(tmp_path)
    if stale.get("pid", 1) is None:
        stale = dict(host=os.uname().nodename, pid=_dead_pid())
    _plant(run_dir, **stale)
    with pytest.raises(claim.Claimed, match="a sweep that is gone .*continue it with --resume"):
        claim.take(run_dir, resume=False)
    with caplog.at_level(logging.WARNING, logger="rmsweep"):
        mine = claim.take(run_dir, resume=True)
    assert claim.read(run_dir) == mine and "taking over the claim of a sweep that is gone" in caplog.text


def test_a_claim_from_another_host_with_a_fresh_heartbeat_is_live(tmp_path):
    run_dir = storage.Location(tmp_path)
    _plant(run_dir)
    with pytest.raises(claim.Claimed, match="in use by a running sweep"):
        claim.take(run_dir, resume=True)


def test_on_s3_the_claim_is_a_conditional_put(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in dict(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                                AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        boto3.client("s3").create_bucket(Bucket="claims")
        run_dir = storage.Location("s3://claims/runs/sweep")
        mine = claim.take(run_dir, resume=False)
        assert claim.read(run_dir) == mine
        assert not claim._create_exclusively(run_dir, b'{"token": "second"}')  # refused by S3 itself
        with pytest.raises(claim.Claimed, match="in use by a running sweep"):
            claim.take(run_dir, resume=False)
    finally:
        server.stop()
