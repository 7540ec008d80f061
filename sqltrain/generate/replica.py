"""The Ray Data callable class of the generate stage: picks the engine where the GPU is.

`GenerationReplica` is what `map_batches` builds once per actor. Its constructor resolves
generate.engine (`resolve_engine`, the one place the choice is made) from what the actor
itself sees -- a CUDA GPU, an installed vllm -- builds that engine (`make_engine`), and times
the load. Each output batch carries the engine's name, its load time and the batch's wall
clock span, from which the driver writes the `.meta.json` timing.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Literal

from sqltrain.config import ConfigError, config_from_dict

Engine = Literal["hf", "vllm"]


def vllm_installed() -> bool:
    """Whether `import vllm` can find the package (without importing it: that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_engine(requested: str, has_cuda: bool, vllm_available: bool) -> Engine:
    """generate.engine -> the engine a replica runs: auto = vllm with a CUDA GPU and vllm
    installed, else hf. An explicit vllm that cannot run is an error, not a silent fallback."""
    if requested == "hf":
        return "hf"
    if requested == "vllm":
        if not vllm_available:
            raise ConfigError("generate.engine=vllm: vllm is not installed (pip install 'sqltrain[vllm]' "
                              "on every GPU node), or set generate.engine=hf")
        if not has_cuda:
            raise ConfigError("generate.engine=vllm needs a CUDA GPU per replica: set generate.use_gpu=true "
                              "on a GPU cluster, or generate.engine=hf")
        return "vllm"
    return "vllm" if has_cuda and vllm_available else "hf"


def make_engine(cfg_dict: dict[str, Any], adapter: str | list[str] | None, gpu_share: float):
    """The engine object for this process (an SQLGenerator or a VLLMGenerator)."""
    import torch

    cfg = config_from_dict(cfg_dict)
    engine = resolve_engine(cfg.generate.engine, torch.cuda.is_available(), vllm_installed())
    if engine == "vllm":
        from sqltrain.generate.vllm_engine import VLLMGenerator

        return VLLMGenerator(cfg_dict, adapter, gpu_share)
    from sqltrain.generate.engine import SQLGenerator

    return SQLGenerator(cfg_dict, adapter)


class GenerationReplica:
    """One replica: the resolved engine, plus timing columns on every output batch.

    cfg_dict, adapter: as for SQLGenerator (none, one adapter dir, or several). gpu_share: the
    fraction of each of its GPUs the actor was given (Ray's num_gpus, capped at 1), for the vllm
    engine's memory budget.
    """

    def __init__(self, cfg_dict: dict[str, Any], adapter: str | list[str] | None = None, gpu_share: float = 1.0):
        start = time.perf_counter()
        self.engine = make_engine(cfg_dict, adapter, gpu_share)
        self.load_seconds = round(time.perf_counter() - start, 3)
        self.columns = {"vllm_compile": cfg_dict["generate"]["vllm_compile"]} if self.engine.engine == "vllm" else {}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        start = time.time()  # wall clock: spans of batches on different replicas are compared
        out = self.engine(batch)
        n = len(out["index"])
        return {**out, "engine": [self.engine.engine] * n, "load_seconds": [self.load_seconds] * n,
                "batch_start": [start] * n, "batch_end": [time.time()] * n,
                **{k: [v] * n for k, v in self.columns.items()}}
