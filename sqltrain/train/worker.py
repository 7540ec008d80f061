"""The per-worker training loop that Ray Train runs on every worker.

`train_loop_per_worker(config_dict)` is a plain module-level function of its argument: it
rebuilds the typed config, loads the base model on this worker's device, attaches LoRA, wraps
it with DeepSpeed and trains, resuming from `ray.train.get_checkpoint()` when Ray restarts it.

config_dict keys (built by sqltrain.train.driver):
  config   the resolved Config as a dict
  plan     a `WorkerPlan` (optimizer steps in all and per epoch), computed once by the driver
  faults   test-only fault injection spec (sqltrain.train.faults), "" in real runs

Every rank takes the same decisions at the same step (skip, stop, report, save): they are made
on values that are already identical across ranks (the all-reduced gradient norm and dev loss,
the step counter), so the collectives inside DeepSpeed and `ray.train.report` stay in step.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqltrain.config import Config, config_from_dict
from sqltrain.train import checkpoints as ck
from sqltrain.train import faults
from sqltrain.train.data import IGNORE_INDEX, collator, input_tokens, load_rows, micro_batch_stream, pad_batch


@dataclass(frozen=True)
class WorkerPlan:
    total_steps: int
    steps_per_epoch: int


@dataclass
class TrainState:
    """What a checkpoint restores, plus the counters of the non-finite guard."""

    step: int = 0
    """Optimizer steps taken (skipped ones included: they consumed their batches)."""
    tokens: int = 0
    """Non-pad input tokens trained on, over all ranks."""
    skipped_steps: int = 0
    consecutive_skips: int = 0
    resumed_from: int | None = None


class Window:
    """Sums between two reports, on the device (no host sync per step): token-weighted loss
    (loss x target tokens), target tokens, input tokens, applied steps."""

    def __init__(self, device):
        import torch

        self.sums = torch.zeros(4, dtype=torch.float64, device=device)
        self.started = time.perf_counter()

    @staticmethod
    def step_sums(loss, batch):
        import torch

        targets = (batch["labels"][:, 1:] != IGNORE_INDEX).sum().double()  # HF shifts labels by one
        tokens = torch.as_tensor(input_tokens(batch), dtype=torch.float64, device=targets.device)
        return torch.stack([loss.detach().double() * targets, targets, tokens,
                            torch.ones((), dtype=torch.float64, device=targets.device)])

    def reset(self) -> None:
        self.sums.zero_()
        self.started = time.perf_counter()


def train_loop_per_worker(config_dict: dict[str, Any]) -> None:
    import ray.train
    import torch

    cfg = config_from_dict(config_dict["config"])
    plan: WorkerPlan = config_dict["plan"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    fraction = gpu_memory_fraction(cfg, device)
    if fraction is not None:
        torch.cuda.set_per_process_memory_fraction(fraction, device)
    if device.type == "cpu":
        # Small CPU hosts: one math thread per worker, or the workers fight over the cores.
        torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    select_attention_kernels(cfg)
    started = time.perf_counter()
    engine = build_engine(cfg, device, plan.total_steps, world)
    built = time.perf_counter()
    state = TrainState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            saved = ck.restore_engine(engine, Path(d))
        state = TrainState(step=saved["step"], tokens=saved["tokens"], skipped_steps=saved.get("skipped_steps", 0),
                           resumed_from=saved["step"])
    restored = time.perf_counter()
    dev_batches = _dev_batches(cfg, rank, world, device)
    if rank == 0:  # where a run's start goes (model load + quantize + LoRA + DeepSpeed, resume, dev rows)
        print(f"[sqltrain] worker start: engine {built - started:.1f} s, checkpoint restore {restored - built:.1f} s, "
              f"dev rows {time.perf_counter() - restored:.1f} s", flush=True)
    stream = micro_batch_stream(
        ray.train.get_dataset_shard("train"), cfg.train.micro_batch_size, plan.steps_per_epoch * cfg.train.grad_accum,
        cfg.train.seed, skip=state.step * cfg.train.grad_accum, device=device,
        collate=collator(cfg.train.packing, cfg.model.attn_implementation, cfg.train.pad_to_multiple_of),
        shuffle_buffer=cfg.train.shuffle_buffer,
    )
    faults.install(faults.parse(config_dict["faults"]), engine.module, state, rank, world,
                   first_attempt=checkpoint is None)
    train(engine, cfg, plan, stream, dev_batches, state, rank, world)


def gpu_memory_fraction(cfg: Config, device) -> float | None:
    """The share of its GPU's memory a worker may cache: train.gpus_per_worker when Ray gives it
    part of a GPU (two Tune trials per GPU), else None (no limit). Without it, one process's
    caching allocator keeps what it freed (one trial held 59 GB of an 80 GB H100 after a dev-loss
    pass, 2026-12-08) and the other, needing 25 GB at its peak, fails with CUDA OOM. With it, the
    allocator releases its cached blocks and retries before it would pass its share."""
    share = cfg.train.gpus_per_worker
    return share if device.type == "cuda" and cfg.train.use_gpu and 0 < share < 1 else None


def select_attention_kernels(cfg: Config) -> None:
    """train.sdpa_cudnn: whether SDPA may use its cuDNN backend in this process. A process-wide
    torch flag, so it is set per worker (and by benchmarks/diagnose_nonfinite.py, to replay)."""
    import torch

    torch.backends.cuda.enable_cudnn_sdp(cfg.train.sdpa_cudnn)


def build_engine(cfg: Config, device, total_steps: int, world_size: int):
    """Base model (quantized) on `device` + LoRA, wrapped by deepspeed.initialize."""
    import deepspeed
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from sqltrain.model.loading import attach_lora, compute_dtype, load_base_model
    from sqltrain.train.deepspeed_cfg import deepspeed_config, skip_nonfinite_steps

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
    if cfg.train.skip_nonfinite:
        skip_nonfinite_steps(engine)
    if compile_enabled(cfg):
        from accelerate.utils import compile_regions_deepspeed

        # All decoder blocks share one code object, and Dynamo keeps one entry per variant of
        # it: block 0's input needs no grad but the others' do, the dev loss runs without grad
        # and with a smaller last batch, and each of these is first compiled for one sequence
        # length before it goes dynamic. That is ~10 entries, over Dynamo's default limit of 8
        # (past it, blocks silently run eager); 64 leaves room.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
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
    return [pad_batch(rows[i:i + mb], device, cfg.train.pad_to_multiple_of) for i in range(0, len(rows), mb)]


def train(engine, cfg: Config, plan: WorkerPlan, stream, dev_batches, state: TrainState, rank: int, world: int) -> None:
    """Optimizer steps from state.step to plan.total_steps; stops early when training diverges.

    A step whose global gradient norm is not finite is skipped by DeepSpeed (no update, no LR
    step; see deepspeed_cfg.skip_nonfinite_steps) and counted here; train.max_skipped_steps
    skips in a row stop the run, as does a non-finite dev loss."""
    t = cfg.train
    window = Window(engine.device)
    while state.step < plan.total_steps:
        _seed_step(t.seed, state.step, rank)
        step_sums, shapes, batches = 0, [], []
        for _ in range(t.grad_accum):
            batch = next(stream)
            batches.append(batch)
            loss = engine(**batch).loss
            engine.backward(loss)
            # Collective: at the accumulation boundary DeepSpeed reduces the gradients across
            # ranks, all-reduces their norm, and applies (or skips) the optimizer step.
            engine.step()
            step_sums = step_sums + Window.step_sums(loss, batch)
            shapes.append(tuple(batch["input_ids"].shape))
        state.step += 1
        if engine.was_step_applied():
            state.consecutive_skips = 0
            window.sums += step_sums
        else:
            stop = _skipped(cfg, state, step_sums, shapes, rank)
            _keep_batches(cfg, state, rank, batches)
            if stop:
                return _report(engine, cfg, plan, dev_batches, state, window, rank, world, diverged=stop)
        if _is_report_step(cfg, plan, state.step):
            if _report(engine, cfg, plan, dev_batches, state, window, rank, world) is not None:
                return
            window.reset()  # reports, dev loss and checkpoints stay out of tokens/s


def _seed_step(seed: int, step: int, rank: int) -> None:
    """Dropout masks as a function of (seed, step, rank): a resumed run draws the same ones."""
    import torch

    torch.manual_seed(seed * 1_000_003 + step * 1_009 + rank)


def _skipped(cfg: Config, state: TrainState, step_sums, shapes: list, rank: int) -> str | None:
    """Count a skipped step and log it; the reason to stop when too many came in a row."""
    state.skipped_steps += 1
    state.consecutive_skips += 1
    loss_sum, targets = step_sums[0].item(), step_sums[1].item()
    if rank == 0:
        print(f"[sqltrain] step {state.step}: non-finite gradient norm, optimizer step skipped "
              f"(loss {loss_sum / max(targets, 1):.4g}, micro batches {shapes}; "
              f"{state.consecutive_skips} in a row, {state.skipped_steps} in all)", flush=True)
    if state.consecutive_skips < cfg.train.max_skipped_steps:
        return None
    return (f"{state.consecutive_skips} optimizer steps in a row had non-finite gradients "
            f"(train.max_skipped_steps={cfg.train.max_skipped_steps})")


MAX_KEPT_BATCHES = 4
"""Skipped steps whose batches are saved for diagnosis (benchmarks/diagnose_nonfinite.py)."""


def _keep_batches(cfg: Config, state: TrainState, rank: int, batches: list[dict]) -> None:
    """Save the micro batches of an early skipped step under {run_dir}/train/nonfinite/ so the
    step can be replayed (eager vs compiled, layer by layer) without the run."""
    import torch

    if state.skipped_steps > MAX_KEPT_BATCHES:
        return
    out = Path(cfg.run_dir) / "train" / "nonfinite"
    out.mkdir(parents=True, exist_ok=True)
    torch.save([{k: v.cpu() for k, v in b.items()} for b in batches], out / f"step-{state.step}-rank-{rank}.pt")


def dev_loss(engine, batches: list[dict]) -> float:
    """Token-weighted mean loss over every rank's dev batches."""
    import torch
    import torch.distributed as dist

    totals = torch.zeros(2, dtype=torch.float64, device=engine.device)
    engine.eval()
    with torch.no_grad():
        for b in batches:
            n = (b["labels"][:, 1:] != IGNORE_INDEX).sum()
            totals += torch.stack([engine(**b).loss.double() * n, n.double()])
    engine.train()
    dist.all_reduce(totals)  # collective: every rank's dev share
    return (totals[0] / totals[1].clamp(min=1)).item()


def _is_report_step(cfg: Config, plan: WorkerPlan, step: int) -> bool:
    t = cfg.train
    return step == plan.total_steps or any(step % n == 0 for n in (t.log_every, t.eval_every, t.save_every))


def _elapsed(started: float, device) -> float:
    """Wall time since `started` once queued GPU work is done (kernels run asynchronously)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _report(engine, cfg: Config, plan: WorkerPlan, dev_batches, state: TrainState, window: Window, rank: int,
            world: int, diverged: str | None = None) -> str | None:
    """One ray.train.report (a barrier: every rank reaches it at the same step), with the dev loss
    at eval/save steps and a checkpoint at save steps and at the end. Returns the reason to stop
    (reported as `diverged`) when the run must not go on, else None."""
    import ray.train
    import torch
    import torch.distributed as dist

    t, step = cfg.train, state.step
    seconds = _elapsed(window.started, engine.device)
    dist.all_reduce(window.sums)  # collective: loss and token sums of every rank
    loss_sum, targets, tokens, applied = window.sums.tolist()
    state.tokens += int(tokens)
    metrics = {
        "step": step, "epoch": round(step / plan.steps_per_epoch, 4),
        "loss": loss_sum / targets if targets else None,  # token-weighted, as the dev loss
        "lr": engine.get_lr()[0], "grad_norm": _grad_norm(engine), "tokens_per_s": tokens / max(seconds, 1e-9),
        "tokens": state.tokens, "skipped_steps": state.skipped_steps, "resumed_from": state.resumed_from,
    }
    if engine.device.type == "cuda":
        metrics["max_mem_gb"] = torch.cuda.max_memory_allocated(engine.device) / 2**30
    save = diverged is None and (step == plan.total_steps or step % t.save_every == 0)
    if diverged is None and (save or step % t.eval_every == 0):
        metrics["dev_loss"] = dev_loss(engine, dev_batches)
        if not math.isfinite(metrics["dev_loss"]):
            diverged = f"the dev loss is {metrics['dev_loss']}"
    if diverged is None and save and not trainable_finite(engine):
        diverged = "the LoRA weights hold non-finite values"
    if diverged is not None:
        metrics["diverged"] = f"step {step}: {diverged}"
        ray.train.report(metrics)  # no checkpoint: nothing non-finite is ever written
        return diverged
    if save:
        _report_checkpoint(engine, cfg, metrics, state, rank)
    else:
        ray.train.report(metrics)
    return None


def trainable_finite(engine) -> bool:
    """True when every trainable tensor is finite on every rank (ZeRO-3 partitions them)."""
    import torch
    import torch.distributed as dist

    params = [p for p in engine.module.parameters() if p.requires_grad and p.numel() > 0]
    local = torch.stack([torch.isfinite(p.detach()).all() for p in params]).all() if params else torch.tensor(True)
    flag = local.to(engine.device, torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)  # collective: finite everywhere
    return bool(flag.item())


def _grad_norm(engine) -> float | None:
    norm = engine.get_global_grad_norm()
    return None if norm is None else float(norm)


def _report_checkpoint(engine, cfg: Config, metrics: dict, state: TrainState, rank: int) -> None:
    import ray.train

    client_state = {"step": state.step, "tokens": state.tokens, "skipped_steps": state.skipped_steps}
    with tempfile.TemporaryDirectory(prefix="sqltrain-ckpt-") as d:
        dest = Path(d)
        ck.write_adapter(engine.module, cfg, dest / ck.ADAPTER, is_writer=rank == 0)
        ck.save_engine(engine, dest, client_state)
        if rank == 0:
            ck.write_state(dest, {k: metrics[k] for k in ("step", "epoch", "loss", "dev_loss", "tokens", "skipped_steps")})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
