"""k8s/rayjob.yaml: a KubeRay RayJob that is secure as described (token auth, no public
dashboard) and consistent with the repository (entrypoint, config, shared volume, GPU count,
image). Never applied here (no Kubernetes in CI); its fields were checked against the KubeRay
v1.5.1 and v1.6.2 RayJob CRD schemas when it was written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IMAGE_ROOT = "/home/ray/sqltrain/"  # WORKDIR of k8s/Dockerfile


@pytest.fixture(scope="module")
def docs() -> dict:
    parsed = list(yaml.safe_load_all((REPO / "k8s" / "rayjob.yaml").read_text()))
    return {d["kind"]: d for d in parsed}


def _pods(job: dict) -> list[dict]:
    spec = job["spec"]["rayClusterSpec"]
    return [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]


def test_it_is_a_rayjob_and_its_shared_volume(docs):
    assert set(docs) == {"RayJob", "PersistentVolumeClaim"}
    assert docs["RayJob"]["apiVersion"] == "ray.io/v1"
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_token_auth_is_on_and_the_dashboard_is_not_public(docs):
    import ray

    cluster = docs["RayJob"]["spec"]["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}
    assert cluster["rayVersion"] == ray.__version__  # authOptions needs Ray >= 2.52 in the pods
    head = cluster["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and head["enableIngress"] is False
    text = (REPO / "k8s" / "rayjob.yaml").read_text()
    assert "NodePort" not in text and "LoadBalancer" not in text and "kind: Ingress" not in text
    assert "dashboard-host" not in str(head["rayStartParams"])


def test_the_job_runs_the_repositorys_entrypoint_and_config(docs):
    from sqltrain.config import load_config

    job = docs["RayJob"]["spec"]
    script, flag, config = job["entrypoint"].split()[1:4]
    assert flag == "--config" and script.startswith(IMAGE_ROOT) and config.startswith(IMAGE_ROOT)
    assert (REPO / script.removeprefix(IMAGE_ROOT)).is_file()
    cfg = load_config(REPO / config.removeprefix(IMAGE_ROOT))
    gpus = sum(int(g["replicas"]) * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
               for g in job["rayClusterSpec"]["workerGroupSpecs"])
    assert gpus == cfg.train.num_workers * cfg.train.gpus_per_worker and cfg.train.use_gpu
    assert yaml.safe_load(job["runtimeEnvYAML"])["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert job["shutdownAfterJobFinishes"] is True


def test_every_pod_mounts_the_shared_volume_where_the_config_keeps_its_paths(docs):
    from sqltrain.config import load_config

    claim = docs["PersistentVolumeClaim"]["metadata"]["name"]
    cfg = load_config(REPO / "configs" / "llama3-8b-qlora-multinode.yaml")
    for pod in _pods(docs["RayJob"]):
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert volumes[mounts["/mnt/shared"]]["persistentVolumeClaim"]["claimName"] == claim
        assert pod["containers"][0]["image"] == "SQLTRAIN_IMAGE"  # replaced at apply time (sed)
    for path in (cfg.run_dir, cfg.data.spider_dir, cfg.model.cache_dir, cfg.cluster.storage_path):
        assert path.startswith("/mnt/shared/"), path


def test_the_image_is_rays_with_sqltrain_installed(docs):
    import ray

    dockerfile = (REPO / "k8s" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-py311-gpu" in dockerfile
    assert f"WORKDIR {IMAGE_ROOT.rstrip('/')}" in dockerfile and "pip install" in dockerfile
    for copied in ("sqltrain", "configs", "ray_jobs", "pyproject.toml"):
        assert f" {copied} " in dockerfile and (REPO / copied).exists()
