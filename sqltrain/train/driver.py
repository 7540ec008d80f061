"""The training driver: check the config, plan the steps, run a Ray Train TorchTrainer.

`run_training(cfg)` is the one entry point: the CLI verb calls it, and Ray Tune calls it from a
trial (Tuner -> driver function -> TorchTrainer; pass Tune's report callback in `callbacks`).
Everything that can be checked without workers is checked first, so a bad config fails in
seconds with a message naming the field, not minutes later inside a worker.

Outputs under {run_dir}/train/: metrics.jsonl (one row per report, from rank 0), checkpoints/
(Ray Train run folder, unless cluster.storage_path points elsewhere), adapter/ (the final
adapter, a PEFT dir), summary.json.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqltrain.config import Config, ConfigError
from sqltrain.io import atomic_write_json, atomic_write_jsonl, read_jsonl
from sqltrain.train.data import SplitInfo, inspect_split, read_split

from ray.train import UserCallback

FAIL_ENV = "SQLTRAIN_FAIL_AT_STEP"
"""Test-only fault injection: see sqltrain.train.worker (a worker os._exit()s after that step)."""
RUN_NAME = "checkpoints"
# Sections whose change makes old checkpoints meaningless to resume from.
RESUME_SECTIONS = ("model", "lora", "quantization", "deepspeed", "train", "prompt")


@dataclass
class TrainResult:
    adapter_dir: str
    """The final adapter (PEFT dir + sqltrain_config.yaml + prompt.json)."""
    checkpoint_dir: str
    """The last checkpoint (local path or storage URI)."""
    best_checkpoint_dir: str | None
    """The checkpoint with the lowest dev loss among those kept."""
    metrics: dict[str, Any]
    """Metrics of the last report (step, loss, dev_loss, tokens_per_s, ...)."""
    metrics_path: str
    steps: int


@dataclass(frozen=True)
class Plan:
    total_steps: int
    steps_per_epoch: int
    train: SplitInfo
    dev: SplitInfo
    dev_rows: int
    """Dev rows used for the dev loss (at most train.eval_examples)."""


def train_dir(cfg: Config) -> Path:
    return Path(cfg.run_dir) / "train"


def plan_steps(cfg: Config, train: SplitInfo, dev: SplitInfo) -> Plan:
    """Optimizer steps from the row count; each worker sees rows // workers rows per epoch."""
    t = cfg.train
    per_step = t.micro_batch_size * t.grad_accum
    steps_per_epoch = (train.rows // t.num_workers) // per_step
    if steps_per_epoch < 1:
        raise ConfigError(
            f"train split has {train.rows} rows: too few for train.num_workers={t.num_workers} x "
            f"train.micro_batch_size={t.micro_batch_size} x train.grad_accum={t.grad_accum}"
        )
    total = t.max_steps if t.max_steps is not None else math.ceil(t.epochs * steps_per_epoch)
    if total < 1:
        raise ConfigError(f"train.epochs={t.epochs} gives no optimizer step")
    dev_rows = min(dev.rows, t.eval_examples)
    if dev_rows < t.num_workers:
        raise ConfigError(f"dev loss needs at least train.num_workers={t.num_workers} dev rows, found {dev_rows}")
    return Plan(total_steps=total, steps_per_epoch=steps_per_epoch, train=train, dev=dev, dev_rows=dev_rows)


def _check_resumable(cfg: Config) -> None:
    """Refuse to resume checkpoints written under a different training config.

    Ray Train resumes any run whose folder holds checkpoints; run.json records which training
    config wrote them. Without checkpoints (e.g. a first attempt that failed early) the config
    may change freely.
    """
    marker = train_dir(cfg) / "run.json"
    digest = cfg.content_hash(*RESUME_SECTIONS)
    local_run = train_dir(cfg) / RUN_NAME / "checkpoint_manager_snapshot.json"
    has_checkpoints = local_run.exists() if cfg.cluster.storage_path is None else marker.exists()
    if has_checkpoints and marker.exists() and json.loads(marker.read_text())["config_hash"] != digest:
        raise ConfigError(
            f"{train_dir(cfg)} holds checkpoints of a different training config (sections "
            f"{', '.join(RESUME_SECTIONS)}); use another run_dir or delete that folder"
        )
    atomic_write_json(marker, {"config_hash": digest})


def preflight(cfg: Config) -> Plan:
    """Every check that needs no worker: model source, shards, step plan, resumability."""
    from sqltrain.model.loading import ModelSourceError, check_model_source

    if cfg.train.use_gpu and cfg.train.gpus_per_worker <= 0:
        raise ConfigError("train.gpus_per_worker must be > 0 when train.use_gpu is true")
    if not cfg.train.use_gpu and cfg.deepspeed.stage == 3 and cfg.quantization.method == "nf4":
        # bitsandbytes repacks NF4 weights for its CPU kernels and cannot unpack a ZeRO-3
        # partition when DeepSpeed saves a checkpoint; on GPUs this combination works.
        raise ConfigError("deepspeed.stage=3 with quantization.method=nf4 needs GPUs (train.use_gpu=true); "
                          "on CPU use stage 2 or quantization.method=none")
    plan = plan_steps(cfg, inspect_split(cfg.run_dir, cfg.data.train_split), inspect_split(cfg.run_dir, cfg.data.eval_split))
    try:  # after the cheap checks: this may dequantize a GGUF or materialise a random preset
        check_model_source(cfg.model)
    except ModelSourceError as e:
        raise ConfigError(str(e)) from None
    _check_resumable(cfg)
    return plan


class MetricsLog(UserCallback):
    """Writes rank 0's reports to metrics.jsonl (runs in the Ray Train controller process).

    After a restart the steps since the restored checkpoint are trained and reported again;
    their new rows replace those of the failed attempt, so each step appears once.
    """

    def __init__(self, path: str):
        self.path = path
        self.rows: list[dict[str, Any]] | None = None

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if self.rows is None:
            self.rows = read_jsonl(self.path) if os.path.exists(self.path) else []
        row = dict(metrics[0])
        if checkpoint is not None:
            row["checkpoint"] = checkpoint.path
        self.rows = [r for r in self.rows if r["step"] < row["step"]] + [row]
        atomic_write_jsonl(self.path, self.rows)


def _fail_at_step() -> int | None:
    value = os.environ.get(FAIL_ENV)
    return int(value) if value else None


def build_trainer(cfg: Config, plan: Plan, callbacks: list | None = None):
    """The TorchTrainer for cfg (ScalingConfig, RunConfig, datasets) without running it."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sqltrain.train.worker import train_loop_per_worker
    from sqltrain.tracking.callback import training_callbacks

    t, out = cfg.train, train_dir(cfg)
    resources = {"CPU": t.cpus_per_worker} | ({"GPU": t.gpus_per_worker} if t.use_gpu else {})
    remote = cfg.cluster.storage_path is not None
    run_config = RunConfig(
        # Shared storage holds many runs: name each by its run_dir; locally run_dir/train is ours.
        name=Path(cfg.run_dir).name if remote else RUN_NAME,
        storage_path=cfg.cluster.storage_path if remote else str(out),
        failure_config=FailureConfig(max_failures=t.max_failures),
        checkpoint_config=CheckpointConfig(
            num_to_keep=t.keep_best, checkpoint_score_attribute="dev_loss", checkpoint_score_order="min"
        ),
        callbacks=[MetricsLog(str(out / "metrics.jsonl")), *training_callbacks(cfg), *(callbacks or [])],
    )
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": cfg.to_dict(),
            "plan": {"total_steps": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch},
            "fail_at_step": _fail_at_step(),
        },
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources),
        run_config=run_config,
        datasets={"train": read_split(plan.train), "dev": read_split(plan.dev, limit=plan.dev_rows)},
        # The dev rows go whole to every worker, which takes its own slice (see worker._dev_batches).
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )


def run_training(cfg: Config, callbacks: list | None = None) -> TrainResult:
    """Train cfg's model on {run_dir}/data shards; returns where the adapter and checkpoints are."""

    from sqltrain.model.loading import with_absolute_paths
    from sqltrain.train.checkpoints import install_adapter

    cfg = cfg.model_copy(update={"model": with_absolute_paths(cfg.model)})
    plan = preflight(cfg)
    from sqltrain.raycluster import ensure_ray

    ensure_ray(cfg.cluster.address, cfg.cluster.runtime_env)
    result = build_trainer(cfg, plan, callbacks).fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint; see {result.path}")
    out = train_dir(cfg)
    adapter = install_adapter(result.checkpoint, out / "adapter")
    best = min(result.best_checkpoints, key=lambda cm: cm[1]["dev_loss"], default=None)
    summary = TrainResult(
        adapter_dir=str(adapter),
        checkpoint_dir=result.checkpoint.path,
        best_checkpoint_dir=best[0].path if best else None,
        metrics=dict(result.metrics or {}),
        metrics_path=str(out / "metrics.jsonl"),
        steps=plan.total_steps,
    )
    atomic_write_json(out / "summary.json", asdict(summary))
    return summary
