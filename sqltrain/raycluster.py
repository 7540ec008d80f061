"""Starting or joining Ray, in one place for every stage."""

from __future__ import annotations

import os
from typing import Any


def ensure_ray(address: str | None = None, runtime_env: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Join `address` (or $RAY_ADDRESS, which `ray job submit` sets), else start a fresh local Ray.

    A bare ``ray.init()`` would silently join whatever cluster /tmp/ray/ray_current_cluster names
    (even a dead one left by an earlier `ray start`), so without an address we ask for a local
    cluster explicitly. Set cluster.address: auto to join a cluster started with `ray start`.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=runtime_env or None, **kwargs)
    else:
        ray.init(address="local", num_cpus=os.cpu_count(), runtime_env=runtime_env or None, **kwargs)
