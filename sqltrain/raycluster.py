"""Starting or joining Ray, in one place for every stage."""

from __future__ import annotations

import os
import socket
from typing import Any

CONNECT_TIMEOUT_S = 10.0
"""How long joining a cluster may take to find its head before we give up and say so."""


class RayConnectError(RuntimeError):
    """The configured Ray address is malformed or nothing answers there; the message says which
    address, where it came from, what was tried and how to fix it."""


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
    address = address or os.environ.get("RAY_ADDRESS")
    target = resolve_address(address, source) if address else None
    if target is None:
        ray.init(address="local", num_cpus=os.cpu_count(), runtime_env=runtime_env or None, **kwargs)
    else:
        ray.init(address=target, runtime_env=runtime_env or None, **kwargs)


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
