"""cluster.yaml (AWS) and cluster-gcp.yaml pass the Ray cluster launcher's own validation (its JSON schema and
the checks `ray up` runs on top), and say what rmsweep needs of a cluster."""
import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["cluster.yaml", "cluster-gcp.yaml"]


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _validate(config: dict) -> None:
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` does before launching anything


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_config_passes_rays_validation(name):
    config = _load(name)
    _validate(config)
    head = config["available_node_types"][config["head_node_type"]]
    assert "GPU" not in head["resources"]  # the driver's node is a CPU node
    assert "InstanceMarketOptions" not in head["node_config"] and "scheduling" not in head["node_config"]
    gpu_types = [t for name, t in config["available_node_types"].items() if name.startswith("gpu_")]
    assert len(gpu_types) >= 2 and all(t["min_workers"] == 0 for t in gpu_types)  # autoscaled from zero
    assert any("pip install" in command and "rmsweep" in command for command in config["setup_commands"])
    assert "token" not in yaml.safe_dump(config["setup_commands"]).lower()  # the HF token is mounted, never inlined
    # Ray's token authentication: the token on every node, and every node's Ray started in token mode.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert all("RAY_AUTH_MODE=token ray start" in command for command in commands if "ray start" in command)
