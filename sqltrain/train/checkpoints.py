"""Training checkpoints: small (adapter + LoRA optimizer state), never the frozen base.

A checkpoint directory (one per `ray.train.report`, merged across workers by Ray Train)::

    adapter/   PEFT dir (adapter_config.json, adapter_model.safetensors) + sqltrain_config.yaml
               + prompt.json -- what generation loads
    engine/    DeepSpeed checkpoint of the trainable parameters only: every rank's ZeRO
               optimizer partition (zero_pp_rank_<r>_*), the LR scheduler and the step counter
    state.json step, epoch, dev loss (for people and for picking the best)

The exported adapter ({run_dir}/train/adapter) also holds training.json: which checkpoint it is,
the skipped-step count, and whether the run diverged (generation refuses such an adapter).

DeepSpeed's `exclude_frozen_parameters` still keeps tensors that are not trainable parameters
(tied embeddings, bitsandbytes quant-state buffers: hundreds of MB on big models, per rank under
ZeRO-3), so each rank rewrites its module state to the trainable parameters afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sqltrain.config import Config, save_config
from sqltrain.io import atomic_dir, atomic_write_json

ADAPTER = "adapter"
ENGINE = "engine"
ENGINE_TAG = "zero"
STATE = "state.json"
CONFIG_FILE = "sqltrain_config.yaml"
PROMPT_FILE = "prompt.json"
TRAINING_FILE = "training.json"


class DivergedAdapterError(ValueError):
    """The adapter comes from a training run that diverged; the message says where and why."""


def trainable(model) -> dict[str, Any]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def write_adapter(model, cfg: Config, dest: Path, is_writer: bool) -> None:
    """Gather the LoRA weights (ZeRO-3 partitions them; a no-op otherwise) and write the
    PEFT dir + resolved config + prompt on the writer rank. Every rank must call this."""
    import deepspeed

    params = trainable(model)
    with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None):
        state = {n: p.detach().to("cpu", copy=True) for n, p in params.items()} if is_writer else None
    if not is_writer:
        return
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, state_dict=state)
    write_adapter_metadata(cfg, dest)


def write_adapter_metadata(cfg: Config, dest: Path) -> None:
    """The resolved config and prompt template beside the adapter: generation reads these."""
    save_config(cfg, dest / CONFIG_FILE)
    atomic_write_json(dest / PROMPT_FILE, cfg.prompt.model_dump(mode="json"))


def save_engine(engine, dest: Path, client_state: dict[str, Any]) -> None:
    """DeepSpeed checkpoint of the trainable state into dest/engine (every rank calls this;
    each writes its own files: rank 0 the module state, or every rank under ZeRO-3)."""
    engine.save_checkpoint(str(dest / ENGINE), tag=ENGINE_TAG, client_state=client_state,
                           exclude_frozen_parameters=True)
    keep = set(trainable(engine.module))
    for f in (dest / ENGINE / ENGINE_TAG).glob("*model_states.pt"):
        _keep_module_keys(f, keep)


def _keep_module_keys(path: Path, keep: set[str]) -> None:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    state["module"] = {k: v for k, v in state["module"].items() if k in keep}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def restore_engine(engine, ckpt_dir: Path) -> dict[str, Any]:
    """Load LoRA weights, optimizer partitions and scheduler; return the saved client state."""
    path, client_state = engine.load_checkpoint(
        str(ckpt_dir / ENGINE), tag=ENGINE_TAG, load_module_strict=False,
        load_optimizer_states=True, load_lr_scheduler_states=True,
    )
    if path is None:
        raise RuntimeError(f"{ckpt_dir / ENGINE}: DeepSpeed found no checkpoint to resume from")
    return client_state


def write_state(dest: Path, state: dict[str, Any]) -> None:
    atomic_write_json(dest / STATE, state)


def read_state(ckpt_dir: Path) -> dict[str, Any]:
    return json.loads((ckpt_dir / STATE).read_text())


def install_adapter(checkpoint, dest: Path, training: dict[str, Any]) -> Path:
    """Copy the adapter of a Ray checkpoint (local or remote storage) to dest with `training`
    as training.json, atomically."""
    with checkpoint.as_directory() as d:
        src = Path(d) / ADAPTER
        if not (src / "adapter_config.json").exists():
            raise RuntimeError(f"checkpoint {checkpoint.path} has no adapter/ directory")
        with atomic_dir(dest) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            atomic_write_json(Path(tmp) / TRAINING_FILE, training)
    return dest


def check_adapter_trusted(adapter: Path) -> None:
    """Raise DivergedAdapterError when the adapter's training.json says its run diverged.
    Adapters without training.json (written before it existed, or by hand) pass."""
    path = Path(adapter) / TRAINING_FILE
    if not path.exists():
        return
    try:
        training = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DivergedAdapterError(f"{path}: unreadable ({e})") from None
    if training.get("diverged"):
        exported = training.get("exported") or {}
        raise DivergedAdapterError(
            f"{adapter}: its training run diverged ({training['diverged']}); it is that run's best "
            f"finite checkpoint (step {exported.get('step')}). Fix the run and train again, or pass that "
            f"checkpoint explicitly: --adapter {exported.get('path')}/{ADAPTER}")
