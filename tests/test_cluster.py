"""A sweep across a two-node Ray cluster (`ray.cluster_utils.Cluster`, one CPU per node) with its run
directory in S3: an S3 server (moto) on 127.0.0.1 stands in for the bucket that every node shares."""
import io
import logging
import os
import socket
import subprocess
import sys
import threading

import boto3
import pandas as pd
import pytest
import ray
import yaml
from moto.server import ThreadedMotoServer
from ray.cluster_utils import Cluster

from rmsweep.cli import run
from rmsweep.sweep import spaces, storage

from ledger_polling import poll_ledger

pytestmark = pytest.mark.slow

BUCKET = "rmsweep-test"


def _s3_server():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="module")
def s3_cluster():
    server, endpoint = _s3_server()
    # Ray's nodes, and the processes they start, inherit these: every node reaches the same S3 server.
    saved = dict(os.environ)
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, namespace="rmsweep", log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    server.stop()
    os.environ.clear()
    os.environ.update(saved)


def _read_csv(location: storage.Location, name: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(location.read_text(name)))


def test_a_sweep_runs_on_both_nodes_with_its_results_in_shared_storage(s3_cluster):
    status = run.main(["--family", "gemma2", "--scale", "tiny", "--num-samples", "1",
                       "--storage", f"s3://{BUCKET}/runs"])
    assert status == 0
    run_dir = storage.Location(f"s3://{BUCKET}/runs/gemma2-bt-tiny")
    trials = _read_csv(run_dir, "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}  # one trial per model: ASHA stops neither
    nodes = {node["NodeID"][:8] for node in ray.nodes() if node["Alive"]}
    assert set(trials["nodes"]) == nodes and len(nodes) == 2  # one CPU each: the two trials at once, one per node
    best = _read_csv(run_dir, "best_per_model.csv")
    assert set(best["model"]) == {"gemma-2-2b-it", "gemma-2-9b-it"} and best["rewardbench"].notna().all()
    for name in ("selector.json", "report.md", "sweep.json", "lr_sensitivity.png",
                 *[f"scores/{model}-rewardbench2.jsonl" for model in best["model"]]):
        assert run_dir.exists(name), name
    # Checkpoints live in the bucket too, one per trial, and their addresses say so.
    assert trials["checkpoint"].str.startswith(f"s3://{BUCKET}/runs/gemma2-bt-tiny/checkpoints/").all()
    keys = [item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sum(key.endswith("model.safetensors") for key in keys) == len(trials)
    assert any("/tune/" in key and "events.out.tfevents" in key for key in keys)  # TensorBoard logs

    result = subprocess.run([sys.executable, "-m", "rmsweep.status", "--storage", f"s3://{BUCKET}/runs",
                             "--name", "gemma2-bt-tiny"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "gemma2-bt-tiny: finished" in result.stdout and "2 of 2 finished" in result.stdout


def test_storage_a_node_cannot_see_is_refused_before_any_trial(s3_cluster, capsys):
    # A third node whose S3 endpoint is a port nothing listens on: it cannot read what the driver writes.
    # (A second moto server would not do: moto keeps its buckets per process, so both would hold the same.)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = nowhere
    try:
        node = s3_cluster.add_node(num_cpus=1)
    finally:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        status = run.main(["--family", "gemma2", "--scale", "tiny", "--name", "refused",
                           "--storage", f"s3://{BUCKET}/runs"])
        assert status == 2
        assert "is not shared: 1 of 3 nodes cannot read what this node writes there" in capsys.readouterr().err
        assert not storage.Location(f"s3://{BUCKET}/runs/refused").exists()
    finally:
        s3_cluster.remove_node(node)


def test_a_node_lost_mid_sweep_costs_no_trial(s3_cluster, tmp_path):
    """Two trials (one alone per base model, so ASHA stops neither; 1 epoch, 64 steps) on a cluster with a spare
    node. Once a trial on a worker node has evaluated, that node is removed: the trial starts again on a node
    still there, from its latest checkpoint, and the sweep completes."""
    space = yaml.safe_load((spaces.DEFAULT_DIR / "paper-bt.yaml").read_text())
    space["by_scale"]["tiny"].update(lr=[1e-3], epochs=[1])
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(space))
    run_dir = storage.Location(f"s3://{BUCKET}/runs/node-lost")
    s3_cluster.add_node(num_cpus=1)  # the spare (Ray starts nodes from the main thread only)
    removed = []

    def remove_the_worker_node_once_its_trial_trains():
        def worker_node_with_a_trial_past_step_16(ledger):
            for node in list(s3_cluster.worker_nodes):
                on_node = ledger["status"].eq("running") & ledger["nodes"].eq(node.node_id[:8])
                if (on_node & ledger["steps"].ge(16)).any():
                    return node, ledger.loc[on_node, "trial_id"].iloc[0]
            return None

        found = poll_ledger(lambda: _read_csv(run_dir, "trials.csv"), worker_node_with_a_trial_past_step_16)
        if found:
            node, trial_id = found
            s3_cluster.remove_node(node, allow_graceful=False)
            removed.append((trial_id, node.node_id[:8]))

    remover = threading.Thread(target=remove_the_worker_node_once_its_trial_trains, daemon=True)
    remover.start()
    status = run.main(["--family", "gemma2", "--scale", "tiny", "--space", "long", "--search-spaces", str(tmp_path),
                       "--sampler", "grid", "--num-samples", "1", "--name", "node-lost",
                       "--storage", f"s3://{BUCKET}/runs"])
    remover.join()
    assert removed and status == 0
    trials = _read_csv(run_dir, "trials.csv")
    assert len(trials) == 2 and set(trials["status"]) == {"completed"} and trials["trial_id"].is_unique
    (lost_trial, lost_node), = removed
    lost = trials.set_index("trial_id").loc[lost_trial]
    assert lost["steps"] == lost["total_steps"] == 64 and lost["nodes"] != lost_node  # finished elsewhere
