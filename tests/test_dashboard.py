"""What the Ray dashboard shows of a sweep: the aggregator's one-line summary in the Actors view, rmsweep's
metrics scraped by a real Prometheus server from Ray's metrics endpoint, and the Grafana dashboard over them."""
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from importlib import resources

import pytest
import ray
from ray.util.state import list_actors

from rmsweep.sweep import aggregate, trial

from conftest import sweep_config

pytestmark = pytest.mark.slow
DASHBOARD = json.loads((resources.files("rmsweep") / "dashboards" / "grafana.json").read_text())


def _row(trial_id, model, status, best, steps):
    return {"trial_id": trial_id, "model": model, "lr": 1e-3, "epochs": 1, "status": status, "steps": steps,
            "total_steps": 64, "best_val_accuracy": best, "wall_seconds": 10.0, "tokens_per_second": 5e4,
            "workers": 1, "gpus": 0.0, "checkpoint": None, "error": ""}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _query(port: int, expression: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["data"]["result"]


def test_trial_runs_are_named_after_model_lr_and_epochs():
    assert trial.run_name("gemma-2-2b-it", 4.66e-4, 2, "a1b2c3") == "gemma-2-2b-it-lr4.66e-04-ep2-a1b2c3"


def test_the_grafana_dashboard_is_valid_and_queries_rmsweeps_metrics():
    assert DASHBOARD["uid"] == "rmsweep" and DASHBOARD["schemaVersion"] >= 36
    expressions = [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]
    for metric in ("ray_rmsweep_trials", "ray_rmsweep_best_val_accuracy", "ray_rmsweep_tokens_per_second"):
        assert any(metric in expression for expression in expressions), metric
    assert len({panel["id"] for panel in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="needs a Prometheus server on PATH (Debian's prometheus; .ci/run installs it)")
def test_the_actors_view_and_a_prometheus_server_show_the_sweep(local_ray, tmp_path):
    sweep = sweep_config(tmp_path)
    aggregator = aggregate.Aggregator.options(name=aggregate.actor_name(sweep.name)).remote(sweep, [ray.put({})])
    ray.get(aggregator.trial_progress.remote(_row("t1", "gemma-2-2b-it", "running", 0.91, 16)))
    ray.get(aggregator.record_trial.remote(_row("t2", "gemma-2-9b-it", "completed", 0.93, 64)))
    assert ray.get(aggregator.summary.remote()) == (
        "rmsweep gemma2-bt-tiny: 1/8 trials done, 1 running; best gemma-2-9b-it 0.930")
    # The Actors view shows the actor's repr as Ray took it when the actor started (Ray reads it once).
    [actor] = list_actors(filters=[("class_name", "=", "Aggregator")], detail=True)
    assert actor["repr_name"] == "rmsweep gemma2-bt-tiny: 0/8 trials done, 0 running; best -"

    config = tmp_path / "prometheus.yml"
    metrics_port, web_port = ray._private.worker.global_worker.node.metrics_export_port, _free_port()
    config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: ray\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
    server = subprocess.Popen([shutil.which("prometheus"), f"--config.file={config}",
                               f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{web_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found, deadline = {}, time.time() + 90
        while time.time() < deadline and len(found) < 3:
            time.sleep(2)
            for name in ("ray_rmsweep_trials", "ray_rmsweep_best_val_accuracy", "ray_rmsweep_tokens_per_second"):
                try:
                    found[name] = _query(web_port, f'{name}{{run="gemma2-bt-tiny"}}') or found.get(name)
                except OSError:  # not listening yet
                    pass
            found = {name: series for name, series in found.items() if series}
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert set(found) == {"ray_rmsweep_trials", "ray_rmsweep_best_val_accuracy", "ray_rmsweep_tokens_per_second"}
    completed = [s for s in found["ray_rmsweep_trials"] if s["metric"]["status"] == "completed"]
    assert [float(s["value"][1]) for s in completed] == [1.0]
    best = {s["metric"]["model"]: float(s["value"][1]) for s in found["ray_rmsweep_best_val_accuracy"]}
    assert best == {"gemma-2-2b-it": 0.91, "gemma-2-9b-it": 0.93}
    ray.kill(aggregator)
