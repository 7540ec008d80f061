"""ray_jobs/: submit a real job to a local Ray head through JobSubmissionClient."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path, monkeypatch):
    """A Ray head on 127.0.0.1 in its own process group (so stopping it touches no other Ray).

    Token auth explicitly off, for the head and this process's client: without RAY_AUTH_MODE,
    Ray turns token auth on whenever ~/.ray/auth_token exists (the multi-node test's token-auth
    cluster leaves one there), and the client, finding RAY_AUTH_MODE unset, sends no token."""
    port, dash = _free_port(), _free_port()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", RAY_USAGE_STATS_ENABLED="0")
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "1",
           "--include-dashboard", "true", "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, start_new_session=True,
                            stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dash}"
    try:
        _wait_for_dashboard(address, proc, tmp_path / "head.log")
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _wait_for_dashboard(address: str, proc, log: Path, timeout: float = 120) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray head exited: {log.read_text()[-2000:]}")
        try:
            JobSubmissionClient(address).list_jobs()
            return
        except Exception:
            time.sleep(1)
    raise TimeoutError(f"dashboard at {address} did not come up: {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_submit_evaluate_job(ray_head, mini_dir, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    out = tmp_path / "eval"
    client = JobSubmissionClient(ray_head)
    entry = (f"python ray_jobs/evaluate.py --spider-dir {mini_dir} --split dev "
             f"--predictions {mini_dir / 'dev_gold.sql'} --out {out}")
    job = client.submit_job(entrypoint=entry, runtime_env={"working_dir": str(REPO),
                            "excludes": [".venv/", ".git/", "runs/", "models/", ".whl/", ".gpubundle/", ".gpucarry/"]})
    deadline = time.time() + 300
    while not client.get_job_status(job).is_terminal() and time.time() < deadline:
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ex"] == 1.0 and summary["n"] >= 80
