"""cluster.yaml: valid for Ray's cluster launcher (its JSON schema and the checks `ray up` runs
before touching a cloud), and shaped as docs/cluster.md describes. It is never brought up here."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema(cluster):
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)


def test_cluster_yaml_passes_the_launchers_own_checks(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(cluster)  # fills GCP defaults, as `ray up` does
    validate_config(prepared)
    assert prepared["provider"]["type"] == "gcp"
    assert prepared["head_node_type"] == "head_cpu"


def test_node_types_are_a_cpu_head_and_a100_workers(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert "GPU" not in head["resources"] and "guestAccelerators" not in head["node_config"]
    gpus = {name: t["resources"]["GPU"] for name, t in types.items() if "GPU" in t["resources"]}
    assert gpus == {"gpu_1xa100": 1, "gpu_8xa100": 8}
    for name in gpus:
        node = types[name]["node_config"]
        assert node["machineType"] == {"gpu_1xa100": "a2-highgpu-1g", "gpu_8xa100": "a2-highgpu-8g"}[name]
        assert node["scheduling"] == {"onHostMaintenance": "TERMINATE"}  # an object, as GCE wants
        assert 0 == types[name]["min_workers"] < types[name]["max_workers"]
    assert sum(t.get("max_workers", 0) for t in types.values()) == cluster["max_workers"]


def test_nodes_get_the_repo_the_package_shared_storage_and_token_auth(cluster):
    assert cluster["file_mounts"]["~/sqltrain"] == "."
    assert "~/.ray/auth_token" in cluster["file_mounts"]
    assert "pip install -q -e ~/sqltrain" in cluster["worker_setup_commands"]
    run_options = cluster["docker"]["run_options"]
    assert "-e RAY_AUTH_MODE=token" in run_options and "-v /mnt/shared:/mnt/shared" in run_options
    assert cluster["docker"]["image"].startswith("rayproject/ray:2.60.0-py311")
    assert any("mount -t nfs" in c and "/mnt/shared" in c for c in cluster["initialization_commands"])
    assert any("--head" in c and "--autoscaling-config" in c for c in cluster["head_start_ray_commands"])
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in cluster["worker_start_ray_commands"])


def test_the_cpu_head_installs_with_the_cpu_constraints_and_gpu_workers_without(cluster):
    # An unpinned torch on the CPU head would be the CUDA build and its GBs of libraries.
    assert cluster["setup_commands"] == []  # nothing common: the two installs differ
    assert any("-c ~/sqltrain/constraints-cpu.txt" in c and "-e ~/sqltrain" in c for c in cluster["head_setup_commands"])
    assert not any("constraints-cpu" in c for c in cluster["worker_setup_commands"])
    for name, node_type in cluster["available_node_types"].items():
        assert "worker_setup_commands" not in node_type, name  # would replace the global list


def test_the_nfs_share_is_one_documented_value_that_every_node_reads(cluster):
    share = cluster["metadata"]["nfs_share"]
    for name, node_type in cluster["available_node_types"].items():
        items = {i["key"]: i["value"] for i in node_type["node_config"]["metadata"]["items"]}
        assert items["sqltrain-nfs-share"] == share, name  # the YAML alias, resolved
    mount = next(c for c in cluster["initialization_commands"] if "mount -t nfs" in c)
    assert "attributes/sqltrain-nfs-share" in mount and '"$NFS" /mnt/shared' in mount
    assert "FILESTORE_IP" in share and "FILESTORE_IP*)" in mount  # an unset value stops the bring-up


def test_the_multinode_config_keeps_its_runs_and_checkpoints_on_the_clusters_share(cluster):
    from sqltrain.config import load_config

    cfg = load_config(REPO / "configs" / "llama3-8b-qlora-multinode.yaml")
    shared = "/mnt/shared/"
    assert "-v /mnt/shared:/mnt/shared" in cluster["docker"]["run_options"]
    for path in (cfg.run_dir, cfg.data.spider_dir, cfg.model.cache_dir, cfg.cluster.storage_path):
        assert path.startswith(shared), path  # not s3:// on a GCP cluster, nor a node-local path
