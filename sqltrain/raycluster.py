"""Starting or joining Ray, in one place for every stage, and checking what every node sees."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

CONNECT_TIMEOUT_S = 10.0
"""How long joining a cluster may take to find its head before we give up and say so."""
NODE_CHECK_TIMEOUT_S = 120.0
"""How long the per-node path check waits for a node's answer (a node may first start a worker)."""
LOCAL_MARK = "SQLTRAIN_LOCAL_RAY"
"""Set beside $RAY_ADDRESS when sqltrain exported the address of a local Ray it started itself:
that address is for Ray's own helpers, not a cluster for a later sqltrain command to join."""
SETUP_HOOK = "sqltrain.raycluster.export_local_address"


class RayConnectError(RuntimeError):
    """The configured Ray address is malformed or nothing answers there; the message says which
    address, where it came from, what was tried and how to fix it."""


class NodePathError(RayConnectError):
    """A node of the cluster does not see a path the run needs; the message names both (a
    RayConnectError: the cluster is not usable as configured, exit code 2 like the others)."""


def ensure_ray(address: str | None = None, runtime_env: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Join `address` (or $RAY_ADDRESS, which `ray job submit` sets), else start a fresh local Ray.

    A bare ``ray.init()`` would silently join whatever cluster /tmp/ray/ray_current_cluster names
    (even a dead one left by an earlier `ray start`), so without an address we ask for a local
    cluster explicitly. Set cluster.address: auto to join a cluster started with `ray start`.
    Before joining, the head's port is probed with a deadline: ray.init itself retries an
    unreachable address for minutes without a word.
    """
    import ray

    if ray.is_initialized():
        return
    source = "cluster.address" if address else "$RAY_ADDRESS"
    env_address = os.environ.get("RAY_ADDRESS")
    if env_address and env_address == os.environ.get(LOCAL_MARK):
        env_address = None  # our own export for an earlier local Ray (see start_local)
    address = address or env_address
    target = resolve_address(address, source) if address else None
    if target is None:
        start_local(runtime_env, **kwargs)
    else:
        ray.init(address=target, runtime_env=runtime_env or None, **kwargs)


def start_local(runtime_env: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Start a local Ray that Ray's own helpers find, in this process and in its workers.

    Helpers that take no address (the state API behind Ray Train's placement-group cleaner, the
    `ray` CLI) look for $RAY_ADDRESS, then /tmp/ray/ray_current_cluster (the last `ray start`,
    maybe dead or another cluster), then any GCS process on the machine ("Found multiple active
    Ray instances" when there are two). So the address of the cluster we start is exported here
    and, through a worker setup hook, in every worker process (a user's own hook is kept and
    ours left out).
    """
    import ray

    env = dict(runtime_env or {})
    env.setdefault("worker_process_setup_hook", SETUP_HOOK)
    ray.init(address="local", num_cpus=os.cpu_count(), runtime_env=env, **kwargs)
    export_local_address()


def export_local_address() -> None:
    """Set $RAY_ADDRESS (and the mark saying it is a local Ray of sqltrain's) to the GCS address
    of the Ray this process is connected to; runs in the driver and, as the setup hook, in
    every worker process of a local Ray that sqltrain started."""
    import ray

    os.environ["RAY_ADDRESS"] = os.environ[LOCAL_MARK] = ray.get_runtime_context().gcs_address


def started_locally() -> bool:
    """True when this process is connected to the local Ray that sqltrain started (one node,
    this machine's filesystem), so per-node checks have nothing to find."""
    import ray

    mark = os.environ.get(LOCAL_MARK)
    return bool(mark) and ray.is_initialized() and ray.get_runtime_context().gcs_address == mark


def resolve_address(address: str, source: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """The address to hand ray.init (None: start a local Ray), after checking that its head answers."""
    if address == "local":
        return None
    if address == "auto":
        from ray._common.utils import get_ray_address_file  # where `ray start` records its cluster

        path = get_ray_address_file(None)
        found = open(path).read().strip() if os.path.isfile(path) else ""
        if not found:
            raise RayConnectError(
                f"{source}=auto: no Ray cluster was started on this machine (no {path}); start one "
                "with `ray start --head`, or unset it to run a local Ray"
            )
        _probe(found, f"{source}=auto (the cluster {path} names)", timeout_s)
        return found
    host_port = address.removeprefix("ray://")
    if address.startswith(("http://", "https://")):
        raise RayConnectError(f"{source}={address!r} is a dashboard/job-submission URL; give the cluster "
                              "address host:6379 (or ray://host:10001, or auto)")
    _probe(host_port, f"{source}={address!r}", timeout_s)
    return address


def _probe(host_port: str, what: str, timeout_s: float) -> None:
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayConnectError(f"{what} is not a Ray address: expected host:port, ray://host:port, auto or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise RayConnectError(
            f"{what}: nothing answers at {host}:{port} (tried a TCP connect for up to {timeout_s:.0f}s: "
            f"{reason}); start the cluster, fix the address, or unset it to run a local Ray"
        ) from None


# --- what every node must see -------------------------------------------------------------


def check_shared(read: dict[str, list[str]], write: dict[str, str] | None = None) -> None:
    """Check that every node sees the paths a stage reads ({what: paths}) and the very same
    directories it writes to ({what: directory}, proved with a probe file the driver writes
    there); raise NodePathError naming the first node and path that fail. Skipped on a local
    Ray that sqltrain started (one node, this machine's filesystem)."""
    from contextlib import ExitStack

    warn_job_copy(write or {})
    if started_locally():
        return
    with ExitStack() as stack:
        probes = {f"{what} {path}": [stack.enter_context(SharedProbe(path))]
                  for what, path in (write or {}).items() if path and "://" not in path}
        check_paths_on_nodes({**read, **probes})


def check_paths_on_nodes(required: dict[str, list[str]], timeout_s: float = NODE_CHECK_TIMEOUT_S) -> None:
    """Run a task on every alive node that checks it sees each path in `required` ({what: paths});
    raise NodePathError naming the first node and path it does not see.

    Local paths only (URIs are the storage client's business). A node added later by the
    autoscaler is not checked: it runs the same setup (mounts) as those that were.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    required = {what: [p for p in paths if "://" not in p] for what, paths in required.items()}
    required = {what: paths for what, paths in required.items() if paths}
    if not required:
        return
    probe = ray.remote(num_cpus=0, max_retries=0)(missing_paths)
    nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
    refs = {node_id: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(required)
            for node_id in nodes}
    problems = []
    for node_id, ref in refs.items():
        where = f"node {nodes[node_id]['NodeManagerAddress']} ({node_id[:12]})"
        try:
            missing = ray.get(ref, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise NodePathError(f"{where} did not answer the path check within {timeout_s:.0f}s; is it "
                                "healthy (`ray status`)? Set cluster.check_nodes=false to skip the check") from None
        problems += [f"{where} does not see {what}: {path}" for what, path in missing]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise NodePathError(f"{problems[0]}{more}; put it on storage every node mounts (docs/cluster.md, "
                            "\"Data every node must see\")")


def missing_paths(required: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(what, path) of each required path this process does not see (runs on every node)."""
    return [(what, p) for what, paths in required.items() for p in paths if not os.path.exists(p)]


class SharedProbe:
    """A uniquely named file in a directory, so that a node's check proves it sees the *same*
    directory as the driver, not merely a directory of the same name (say, an unmounted
    /mnt/shared). Use as a context manager; the file is removed afterwards."""

    def __init__(self, directory: str):
        self.path = Path(directory) / f".sqltrain-node-check-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("written by the driver's pre-flight; removed after it\n")
        return str(self.path)

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


_WARNED: set[str] = set()


def warn_job_copy(paths: dict[str, str | None]) -> None:
    """Print each job_copy_paths warning once per process (on stderr)."""
    import sys

    for warning in job_copy_paths(paths):
        if warning not in _WARNED:
            _WARNED.add(warning)
            print(f"[sqltrain] warning: {warning}", file=sys.stderr, flush=True)


def job_copy_paths(paths: dict[str, str | None]) -> list[str]:
    """Warnings for paths that lie inside a Ray job's uploaded working_dir copy: a relative path
    in a job resolves there, on the head only, and is deleted with the job's files."""
    import json

    job = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not job or not (json.loads(job).get("runtime_env") or {}).get("working_dir"):
        return []
    here = Path.cwd().resolve()
    inside = [(what, p) for what, p in paths.items() if p and "://" not in p and Path(p).resolve().is_relative_to(here)]
    return [f"{what} ({p}) lies inside this Ray job's temporary copy of its working_dir ({here}): other nodes do "
            f"not see it and Ray deletes it with the job's files; pass an absolute path on shared storage"
            for what, p in inside]
