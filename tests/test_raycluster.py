"""sqltrain.raycluster: the local Ray sqltrain starts is the one Ray's own helpers find (with
another Ray alive on the machine), and the per-node path check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sqltrain.raycluster import LOCAL_MARK, SharedProbe, job_copy_paths, missing_paths

sys.path.insert(0, str(Path(__file__).parent))
from ray_nodes import free_port, kill_group  # noqa: E402

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

# A tiny Ray Train run in a fresh process: the placement-group cleaner Ray Train starts beside
# every run asks "the" cluster's state API whether the run's controller is alive.
TRAIN = """
import json, os, sys, time
import ray
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from sqltrain.raycluster import ensure_ray

def loop(config):
    import ray.train
    ray.train.report({"address_in_worker": os.environ.get("RAY_ADDRESS")})

ensure_ray()
ours = ray.get_runtime_context().gcs_address
result = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
                      run_config=RunConfig(storage_path=sys.argv[1], name="run")).fit()
time.sleep(3)  # the cleaner checks the controller every second or so; give it a few rounds
print(json.dumps({"ours": ours, "driver": os.environ.get("RAY_ADDRESS"), "mark": os.environ.get("SQLTRAIN_LOCAL_RAY"),
                  "session": ray._private.worker._global_node.get_session_dir_path()}))
ray.shutdown()
"""


@pytest.fixture
def other_ray(tmp_path):
    """Another Ray cluster alive on this machine (`ray start --head`, its own temp dir)."""
    tmp = tempfile.mkdtemp(prefix="sqlt-other-", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=tmp, RAY_USAGE_STATS_ENABLED="0", PATH=f"{BIN}:{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--port", str(port), "--num-cpus", "1",
                             "--node-ip-address", "127.0.0.1", "--include-dashboard", "false", "--disable-usage-stats"],
                            env=env, start_new_session=True, stdout=open(tmp_path / "other.log", "w"),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (Path(tmp) / "ray" / "ray_current_cluster").exists():
            assert proc.poll() is None, (tmp_path / "other.log").read_text()[-2000:]
            time.sleep(1)
        yield f"127.0.0.1:{port}"
    finally:
        kill_group(proc)
        subprocess.run(["rm", "-rf", tmp])


@pytest.mark.slow
def test_the_local_ray_sqltrain_starts_is_the_one_rays_helpers_find(tmp_path, other_ray):
    # Our temp dir names no cluster (no ray_current_cluster), so without an address Ray's helpers
    # fall back to the GCS processes on the machine: ours and the other one at least. Ray
    # Train's placement-group cleaner then fails with "Found multiple active Ray instances".
    ours_tmp = tempfile.mkdtemp(prefix="sqlt-ours-", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=ours_tmp, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
    for key in ("RAY_ADDRESS", LOCAL_MARK):
        env.pop(key, None)
    try:
        proc = subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path / "storage")], env=env, capture_output=True,
                              text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen["driver"] == seen["mark"] == seen["ours"]  # exported in the driver...
        assert seen["ours"].rsplit(":", 1)[1] != other_ray.rsplit(":", 1)[1]
        logs = "".join(p.read_text(errors="replace") for p in Path(seen["session"], "logs").rglob("*")
                       if p.is_file() and p.suffix in (".out", ".err", ".log"))
        output = proc.stdout + proc.stderr + logs
        assert "PlacementGroupCleaner" in logs  # it ran (its actor wrote logs)...
        assert "Found multiple active Ray instances" not in output  # ...and found our cluster
        assert "Failed to stop PlacementGroupCleaner" not in output
        assert "Failed to query Ray Train Controller actor state" not in output
    finally:
        subprocess.run(["rm", "-rf", ours_tmp])


def test_a_later_sqltrain_command_does_not_join_the_exported_address_of_a_local_ray(monkeypatch):
    # The exported $RAY_ADDRESS is for Ray's helpers; with the mark beside it ensure_ray starts a
    # fresh local Ray instead of joining (or failing on) the earlier one.
    import ray

    from sqltrain import raycluster

    started = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(raycluster, "start_local", lambda runtime_env=None, **kw: started.append(runtime_env))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv(LOCAL_MARK, "127.0.0.1:1")
    raycluster.ensure_ray(None, {"env_vars": {"A": "1"}})
    assert started == [{"env_vars": {"A": "1"}}]
    monkeypatch.setenv(LOCAL_MARK, "127.0.0.1:2")  # a $RAY_ADDRESS of the user's: joined (here: refused)
    with pytest.raises(raycluster.RayConnectError, match=r"\$RAY_ADDRESS='127.0.0.1:1'"):
        raycluster.ensure_ray(None)


def test_missing_paths_and_the_shared_probe(tmp_path):
    (tmp_path / "here").write_text("x")
    needs = {"shards": [str(tmp_path / "here"), str(tmp_path / "gone")], "model": [str(tmp_path)]}
    assert missing_paths(needs) == [("shards", str(tmp_path / "gone"))]
    with SharedProbe(str(tmp_path / "storage")) as probe:
        assert Path(probe).exists() and Path(probe).parent == tmp_path / "storage"
    assert not Path(probe).exists() and (tmp_path / "storage").is_dir()  # the probe is removed, the folder kept


def test_paths_inside_a_jobs_working_dir_copy_are_warned_about(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = {"run_dir": str(tmp_path / "runs" / "x"), "cluster.storage_path": "/mnt/shared/ray_results",
             "other": "gs://bucket/x"}
    assert job_copy_paths(paths) == []  # not inside a job
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg.zip"}}))
    (warning,) = job_copy_paths(paths)
    assert warning.startswith(f"run_dir ({tmp_path}/runs/x) lies inside this Ray job's temporary copy")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}}))
    assert job_copy_paths(paths) == []  # a job without a working_dir runs where it was started


def test_stages_warn_once_when_they_would_write_into_a_jobs_working_dir_copy(tmp_path, monkeypatch, capsys):
    from sqltrain import raycluster

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg.zip"}}))
    monkeypatch.setattr(raycluster, "started_locally", lambda: True)  # one node: nothing to probe
    for _ in range(2):
        raycluster.check_shared({}, write={"run_dir": str(tmp_path / "runs" / "p")})
    err = capsys.readouterr().err
    assert err.count("warning: run_dir (") == 1 and "pass an absolute path on shared storage" in err
