"""A real multi-node Ray cluster on one host: a head and a second node, each its own `ray start`
(separate raylets, node ids and object stores), token auth on, training across both over gloo
with checkpoints on cluster.storage_path, jobs submitted as docs/cluster.md says (ray_jobs/);
then a third node whose view of the shared folder is
private, which the pre-flight must name before any training starts.

How one machine gives a node a private view of a path: the third node's `ray start` runs in its
own mount namespace (`unshare -m`, root) with an empty tmpfs mounted over the shared folder, so
that node and every worker it forks see an empty directory there, while the others see the real
one -- as a node whose NFS mount is missing would. (A node-specific path would prove less: the
same absolute path must resolve to different contents on different nodes for the bug to exist.)

Every process is started in its own session and stopped by its process group: `ray stop` would
stop every Ray on the machine, other people's included.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sqltrain.io import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
from ray_nodes import BIN, REPO, Nodes
from train_shards import write_shards

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, mini_dir):
    base = tmp_path_factory.mktemp("multinode")
    shared = base / "shared"  # the "NFS share": runs, checkpoints, model cache
    shared.mkdir()
    nodes = Nodes(base)
    try:
        nodes.start("head", cpus=2, head=True)
        nodes.start("b", cpus=1)
        nodes.shared = shared
        yield nodes
    finally:
        nodes.stop()


def _config(nodes: Nodes, run_dir: Path, *overrides: str) -> list[str]:
    return [
        f"run_dir={run_dir}", f"model.cache_dir={nodes.shared / 'models'}", "model.name=random:tiny",
        "quantization.method=none", "model.gradient_checkpointing=false",
        "train.num_workers=2", "train.cpus_per_worker=0.5", "train.micro_batch_size=4",
        "train.max_steps=4", "train.log_every=1", "train.eval_every=2", "train.save_every=2",
        "train.eval_examples=16", "train.lr=1e-2", "deepspeed.stage=2", "deepspeed.bucket_size=1000000",
        f"cluster.address={nodes.address}", f"cluster.storage_path={nodes.shared / 'ray_results'}",
        "cluster.placement_strategy=STRICT_SPREAD",  # one worker per node: the run must cross nodes
        *overrides,
    ]


def _shards(nodes: Nodes, run_dir: Path, mini_dir: Path) -> None:
    from sqltrain.config import load_config
    from sqltrain.model.loading import load_tokenizer
    from sqltrain.spider.benchmark import SpiderBenchmark

    bench = SpiderBenchmark(mini_dir)
    tok = load_tokenizer(load_config(None, _config(nodes, run_dir)).model)
    write_shards(run_dir, bench, tok, {"train": bench.examples("train")[:64], "dev": bench.examples("dev")[:16]})


def _train(nodes: Nodes, run_dir: Path, mini_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    if not (run_dir / "data").exists():
        _shards(nodes, run_dir, mini_dir)
    config = run_dir.parent / "train.yaml"
    config.write_text("{}\n")
    return nodes.sqltrain("train", "--config", str(config), *_config(nodes, run_dir, *overrides))


@pytest.fixture(scope="module")
def run_a(cluster, mini_dir):
    run = cluster.shared / "a" / "run"
    proc = _train(cluster, run, mini_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


def test_training_crosses_both_nodes_with_checkpoints_on_the_shared_storage(cluster, run_a):
    rows = read_jsonl(run_a / "train" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    summary = json.loads((run_a / "train" / "summary.json").read_text())
    checkpoint = Path(summary["checkpoint_dir"])
    assert checkpoint.is_relative_to(cluster.shared / "ray_results")
    # Each rank wrote its own ZeRO optimizer partition into the shared checkpoint: one per node.
    zero = {p.name for p in (checkpoint / "engine" / "zero").iterdir()}
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= zero
    assert (run_a / "train" / "adapter" / "adapter_model.safetensors").exists()


def test_jobs_submit_as_documented_and_warn_about_a_relative_run_dir(cluster):
    # docs/cluster.md: `ray job submit --address <dashboard> --runtime-env ray_jobs/runtime_env.yaml`
    # with RAY_AUTH_MODE=token, from the repository root.
    submit = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_url,
              "--runtime-env", "ray_jobs/runtime_env.yaml", "--", "python", "ray_jobs/train.py",
              "--config", "configs/train-cpu-smoke.yaml", "run_dir=runs/relative"]
    proc = _submit(submit, cluster.env)
    out = proc.stdout + proc.stderr
    # The job ran on the cluster; its relative run_dir resolved inside the job's copy of the
    # working dir, which sqltrain says before anything else (and there are no shards there).
    assert "warning: run_dir (" in out and "lies inside this Ray job's temporary copy of its working_dir" in out, out[-3000:]
    assert "no train shards" in out and proc.returncode != 0
    # Without RAY_AUTH_MODE=token the same command is refused: the docs are not decoration.
    no_auth = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
    proc = _submit(submit, no_auth)
    assert proc.returncode != 0 and "AuthenticationError" in proc.stdout + proc.stderr


def test_an_evaluate_job_scores_on_the_cluster(cluster, mini_dir, tmp_path):
    # The same documented submit, a job that succeeds: ray_jobs/evaluate.py joins the cluster the
    # job runs on and writes its summary where the command said.
    out = tmp_path / "eval"
    submit = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_url,
              "--runtime-env", "ray_jobs/runtime_env.yaml", "--", "python", "ray_jobs/evaluate.py",
              "--spider-dir", str(mini_dir), "--split", "dev", "--predictions", str(mini_dir / "dev_gold.sql"),
              "--out", str(out)]
    proc = _submit(submit, cluster.env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ex"] == 1.0 and summary["n"] >= 80


def _submit(cmd: list[str], env: dict, patience_s: float = 120) -> subprocess.CompletedProcess:
    """`ray job submit`, again while the head's job agent is still starting (a busy machine)."""
    deadline = time.time() + patience_s
    while True:
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        if "No available agent to submit job" not in proc.stdout + proc.stderr or time.time() > deadline:
            return proc
        time.sleep(5)


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_a_node_without_the_shared_path_is_named_before_training_and_nothing_is_lost(cluster, mini_dir):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -m` (root, or a user namespace) to give one node a private mount")
    run = cluster.shared / "d" / "run"
    _shards(cluster, run, mini_dir)
    cluster.start("private", cpus=1, private=cluster.shared)
    before = _files(cluster.shared)
    proc = _train(cluster, run, mini_dir)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    error = proc.stderr.strip().splitlines()[-1]  # (above it: Ray's own connection log lines)
    assert re.match(rf"sqltrain train: node \S+ \([0-9a-f]{{12}}\) does not see the prepared shards \({run}/data\): "
                    rf"{run}/data/\w+/part-\d+\.parquet \(and 4 more\); put it on storage every node mounts", error), error
    # (4 more: the other shards, and the probe file in the checkpoint storage)
    assert "Traceback" not in proc.stdout + proc.stderr
    # prepare (the finding: it reported success while a shard stayed on the other node's disk)
    # and evaluate (a 48-line traceback) stop the same way, before any work.
    shutil.copytree(mini_dir, cluster.shared / "mini")
    before_stages = _files(cluster.shared)
    for verb, args in (("prepare", ["--config", str(run.parent / "train.yaml"), f"run_dir={cluster.shared / 'p' / 'run'}",
                                    "data.spider_dir=mini", f"cluster.address={cluster.address}"]),
                       ("evaluate", ["--spider-dir", str(cluster.shared / "mini"), "--split", "dev", "--predictions",
                                     str(cluster.shared / "mini" / "dev_gold.sql"), "--out", str(cluster.shared / "eval"),
                                     "evaluate.parallel_threshold=0", f"cluster.address={cluster.address}"])):
        proc = cluster.sqltrain(verb, *args)
        error = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2 and re.match(rf"sqltrain {verb}: node \S+ \([0-9a-f]{{12}}\) does not see ", error), \
            proc.stdout[-2000:] + proc.stderr[-3000:]
        assert ("run_dir" if verb == "prepare" else "the databases") in error
    assert _files(cluster.shared) == before_stages  # nothing written
    after = _files(cluster.shared)
    assert {k: after.get(k) for k in before} == before  # nothing removed or changed
    new = sorted(set(after) - set(before) - set(_files(cluster.shared / "mini")))
    # New: the model the pre-flight materialised into the shared cache, the run's id marker and
    # the test's own config file. No checkpoint folder, no probe file left behind.
    assert all(k.startswith(str(cluster.shared / "models")) or k in (str(run / "train" / "run.json"),
               str(run.parent / "train.yaml")) for k in new), new
