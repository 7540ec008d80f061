"""ray_jobs/: submit a real job to a local Ray head through JobSubmissionClient."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from ray_nodes import REPO, Nodes


@pytest.fixture
def ray_head(tmp_path, monkeypatch):
    """A Ray head of its own (tests/ray_nodes.py), token auth explicitly off for the head and this
    process's client: without RAY_AUTH_MODE, Ray turns token auth on whenever ~/.ray/auth_token
    exists (the multi-node test's token-auth cluster leaves one there), and the client, finding
    RAY_AUTH_MODE unset, sends no token."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    nodes = Nodes(tmp_path, auth="disabled")
    try:
        nodes.start("head", cpus=1, head=True)
        nodes.wait_for_dashboard()
        yield nodes.dashboard_url
    finally:
        nodes.stop()


@pytest.mark.slow
def test_submit_evaluate_job(ray_head, mini_dir, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    out = tmp_path / "eval"
    client = JobSubmissionClient(ray_head)
    entry = (f"python ray_jobs/evaluate.py --spider-dir {mini_dir} --split dev "
             f"--predictions {mini_dir / 'dev_gold.sql'} --out {out}")
    documented = yaml.safe_load((REPO / "ray_jobs" / "runtime_env.yaml").read_text())  # what users submit with
    job = client.submit_job(entrypoint=entry, runtime_env={**documented, "working_dir": str(REPO)})
    deadline = time.time() + 300
    while not client.get_job_status(job).is_terminal() and time.time() < deadline:
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ex"] == 1.0 and summary["n"] >= 80
