"""The per-worker training loop that Ray Train runs on every worker.

`train_loop_per_worker(config_dict)` is a plain module-level function of its argument: it
rebuilds the typed config, loads the base model on this worker's device, attaches LoRA, wraps
it with DeepSpeed and trains, resuming from `ray.train.get_checkpoint()` when Ray restarts it.

config_dict keys (built by sqltrain.train.driver):
  config        the resolved Config as a dict
  plan          {"total_steps", "steps_per_epoch"} computed once by the driver from the shards
  fail_at_step  test-only fault injection: when set, the last-ranked worker kills its own
                process (os._exit) right after that optimizer step, on the first attempt only
                (no checkpoint restored yet). The driver fills it from $SQLTRAIN_FAIL_AT_STEP.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqltrain.config import Config, config_from_dict
from sqltrain.train import checkpoints as ck
from sqltrain.train.data import load_rows, micro_batch_stream, pad_batch


def train_loop_per_worker(config_dict: dict[str, Any]) -> None:
    import ray.train
    import torch

    cfg = config_from_dict(config_dict["config"])
    plan = config_dict["plan"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        # Small CPU hosts: one math thread per worker, or the workers fight over the cores.
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    engine = build_engine(cfg, device, plan["total_steps"], world)
    state = {"step": 0, "tokens": 0, "resumed_from": None}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            saved = ck.restore_engine(engine, Path(d))
        state.update(step=saved["step"], tokens=saved["tokens"], resumed_from=saved["step"])
    dev_batches = _dev_batches(cfg, rank, world, device)
    stream = micro_batch_stream(
        ray.train.get_dataset_shard("train"), cfg.train.micro_batch_size, plan["steps_per_epoch"] * cfg.train.grad_accum,
        cfg.train.seed, skip=state["step"] * cfg.train.grad_accum, device=device,
    )
    fail_at = config_dict["fail_at_step"] if checkpoint is None and rank == world - 1 else None
    _train(engine, cfg, plan, stream, dev_batches, state, fail_at, rank)


def build_engine(cfg: Config, device, total_steps: int, world_size: int):
    """Base model (quantized) on `device` + LoRA, wrapped by deepspeed.initialize."""
    import deepspeed
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from sqltrain.model.loading import attach_lora, compute_dtype, load_base_model
    from sqltrain.train.deepspeed_cfg import deepspeed_config

    torch.manual_seed(cfg.train.seed)  # identical LoRA init on every rank
    if device.type == "cuda":
        torch.cuda.set_device(device)  # bitsandbytes quantizes on the current device
    device_map = {"": device.index if device.type == "cuda" else "cpu"}
    model = attach_lora(load_base_model(cfg, device_map=device_map), cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    warmup = math.ceil(cfg.train.warmup_ratio * total_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    dtype_name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(compute_dtype(cfg.model), "fp32")
    # DeepSpeed would pick cuda:$LOCAL_RANK; Ray Train's device is the authority (they differ
    # when Ray gives each worker its own CUDA_VISIBLE_DEVICES).
    args = SimpleNamespace(device_rank=device.index) if device.type == "cuda" else None
    engine, *_ = deepspeed.initialize(
        args=args, model=model, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(cfg, world_size, dtype_name),
    )
    if compile_enabled(cfg):
        from accelerate.utils import compile_regions_deepspeed

        # In place (module.compile()), after DeepSpeed has added its hooks: parameter names and
        # the adapter's state dict stay as they were.
        compile_regions_deepspeed(engine.module)
    return engine


def compile_enabled(cfg: Config) -> bool:
    """Whether train.compile asks for regional torch.compile on this run."""
    t = cfg.train
    if t.compile == "auto":
        return t.use_gpu and t.num_workers == 1 and cfg.deepspeed.stage <= 2
    return t.compile


def _dev_batches(cfg: Config, rank: int, world: int, device) -> list[dict]:
    """This rank's share of the dev rows, as padded batches. Every rank gets the same number of
    rows (the tail that does not divide evenly is dropped), so ZeRO-3 gathers stay in step."""
    import ray.train

    rows = load_rows(ray.train.get_dataset_shard("dev"))
    rows = rows[: len(rows) // world * world][rank::world]
    rows.sort(key=lambda r: len(r[0]))
    mb = cfg.train.micro_batch_size
    return [pad_batch(rows[i:i + mb], device) for i in range(0, len(rows), mb)]


def dev_loss(engine, batches: list[dict]) -> float:
    """Token-weighted mean loss over every rank's dev batches."""
    import torch
    import torch.distributed as dist

    totals = torch.zeros(2, dtype=torch.float64, device=engine.device)
    engine.eval()
    with torch.no_grad():
        for b in batches:
            n = (b["labels"][:, 1:] != -100).sum()
            totals += torch.stack([engine(**b).loss.double() * n, n.double()])
    engine.train()
    dist.all_reduce(totals)
    return (totals[0] / totals[1].clamp(min=1)).item()


def _train(engine, cfg: Config, plan: dict, stream, dev_batches, state: dict, fail_at: int | None, rank: int) -> None:
    """Optimizer steps from state["step"] to the planned total, reporting as configured."""
    import torch

    t = cfg.train
    window = torch.zeros(3, dtype=torch.float64, device=engine.device)  # loss sum, micro batches, tokens
    started = time.perf_counter()
    while state["step"] < plan["total_steps"]:
        for _ in range(t.grad_accum):
            batch = next(stream)
            loss = engine(**batch).loss
            engine.backward(loss)
            engine.step()
            window += torch.stack([loss.detach().double(), torch.ones((), dtype=torch.float64, device=loss.device),
                                   batch["attention_mask"].sum().double()])
        state["step"] += 1
        if fail_at is not None and state["step"] == fail_at:
            os._exit(1)
        if _is_report_step(cfg, plan, state["step"]):
            _report(engine, cfg, plan, dev_batches, state, window, _elapsed(started, engine.device), rank)
            window.zero_()
            started = time.perf_counter()  # reports, dev loss and checkpoints stay out of tokens/s


def _elapsed(started: float, device) -> float:
    """Wall time since `started` once queued GPU work is done (kernels run asynchronously)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _is_report_step(cfg: Config, plan: dict, step: int) -> bool:
    t = cfg.train
    return step == plan["total_steps"] or any(step % n == 0 for n in (t.log_every, t.eval_every, t.save_every))


def _report(engine, cfg: Config, plan: dict, dev_batches, state: dict, window, seconds: float, rank: int) -> None:
    """One ray.train.report (a barrier: every rank reaches it at the same step), with the dev
    loss at eval/save steps and a checkpoint at save steps and at the end."""
    import ray.train
    import torch
    import torch.distributed as dist

    t, step = cfg.train, state["step"]
    save = step == plan["total_steps"] or step % t.save_every == 0
    dist.all_reduce(window)
    loss_sum, micro, tokens = window.tolist()
    state["tokens"] += int(tokens)
    metrics = {
        "step": step, "epoch": round(step / plan["steps_per_epoch"], 4), "loss": loss_sum / max(micro, 1),
        "lr": engine.get_lr()[0], "grad_norm": _grad_norm(engine), "tokens_per_s": tokens / max(seconds, 1e-9),
        "tokens": state["tokens"], "resumed_from": state["resumed_from"],
    }
    if engine.device.type == "cuda":
        metrics["max_mem_gb"] = torch.cuda.max_memory_allocated(engine.device) / 2**30
    if save or step % t.eval_every == 0:
        metrics["dev_loss"] = dev_loss(engine, dev_batches)
    if save:
        _report_checkpoint(engine, cfg, metrics, rank)
    else:
        ray.train.report(metrics)


def _grad_norm(engine) -> float | None:
    norm = engine.get_global_grad_norm()
    return None if norm is None else float(norm)


def _report_checkpoint(engine, cfg: Config, metrics: dict, rank: int) -> None:
    import ray.train

    client_state = {"step": metrics["step"], "tokens": metrics["tokens"]}
    with tempfile.TemporaryDirectory(prefix="sqltrain-ckpt-") as d:
        dest = Path(d)
        ck.write_adapter(engine.module, cfg, dest / ck.ADAPTER, is_writer=rank == 0)
        ck.save_engine(engine, dest, client_state)
        if rank == 0:
            ck.write_state(dest, {k: metrics[k] for k in ("step", "epoch", "loss", "dev_loss", "tokens")})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
