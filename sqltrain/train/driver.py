"""The training driver: check the config, plan the steps, run a Ray Train TorchTrainer.

`run_train(cfg)` is the one entry point: the CLI verb calls it, and Ray Tune calls it from a
trial (Tuner -> driver function -> TorchTrainer; pass Tune's report callback in `callbacks`).
Everything that can be checked without workers is checked first, so a bad config fails in
seconds with a message naming the field, not minutes later inside a worker.

Outputs under {run_dir}/train/: metrics.jsonl (one row per report, from rank 0), checkpoints/
(Ray Train run folder, unless cluster.storage_path points elsewhere), adapter/ (the exported
adapter, a PEFT dir: the best checkpoint by dev loss unless train.export=last), summary.json.

A run that diverges (train.max_skipped_steps non-finite steps in a row, or a non-finite dev
loss) stops early; its best finite checkpoint is still exported, marked as coming from a
diverged run (generation refuses it), and run_train raises TrainingDiverged.
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
from sqltrain.stages import spec
from sqltrain.train import faults
from sqltrain.train.data import SplitInfo, inspect_split, read_split

from ray.train import UserCallback

RUN_NAME = "checkpoints"
RESUME_SECTIONS = spec("train").sections
"""Sections whose change makes old checkpoints meaningless to resume from (the shards' own
fingerprint covers the rest): train's sections in the stage registry."""


class TrainingDiverged(RuntimeError):
    """Training stopped early because it diverged; the message names the step and the knobs."""


@dataclass
class TrainResult:
    adapter_dir: str
    """The exported adapter (PEFT dir + sqltrain_config.yaml + prompt.json + training.json)."""
    exported: dict[str, Any]
    """Which checkpoint the adapter is: {"which": best|last, "step", "dev_loss", "path"}."""
    checkpoint_dir: str
    """The last checkpoint (local path or storage URI)."""
    best_checkpoint_dir: str | None
    """The checkpoint with the lowest finite dev loss among those kept."""
    metrics: dict[str, Any]
    """Metrics of the last report (step, loss, dev_loss, tokens_per_s, skipped_steps, ...)."""
    metrics_path: str
    steps: int
    skipped_steps: int
    """Optimizer steps skipped for a non-finite gradient norm."""
    diverged: str | None = None
    """Why and where the run stopped early, or None when it ran to the end."""


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


def shards_fingerprint(cfg: Config) -> str | None:
    """The prepared shards' fingerprint from {run_dir}/data/manifest.json (None without one)."""
    manifest = Path(cfg.run_dir) / "data" / "manifest.json"
    if "://" in cfg.run_dir or not manifest.exists():
        return None
    try:
        return json.loads(manifest.read_text()).get("fingerprint")
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{manifest}: unreadable ({e}); run `sqltrain prepare` again") from None


def run_id(cfg: Config) -> str:
    """Identity of a training run: the training config plus the shards it reads. Checkpoints
    are resumed only by the same run id."""
    import hashlib

    key = json.dumps([cfg.content_hash(*RESUME_SECTIONS), shards_fingerprint(cfg)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def storage_run_name(cfg: Config) -> str:
    """The Ray Train run folder under cluster.storage_path: <run_dir name>-<run id>-<run_dir hash>.
    The run id keeps a run of another config or other shards from resuming these checkpoints;
    the hash of the absolute run_dir keeps a rerun of the same config into a fresh run_dir from
    being handed the first run's (finished) checkpoints as its own."""
    import hashlib

    where = hashlib.sha256(cfg.run_dir.encode()).hexdigest()[:8]
    return f"{Path(cfg.run_dir).name}-{run_id(cfg)}-{where}"


def _check_resumable(cfg: Config) -> None:
    """Refuse to resume checkpoints written by another run (other training config or shards).

    Ray Train resumes any run whose folder holds checkpoints; run.json records which run wrote
    them. Without checkpoints (e.g. a first attempt that failed early) the config may change freely.
    """
    marker = train_dir(cfg) / "run.json"
    digest = run_id(cfg)
    local_run = train_dir(cfg) / RUN_NAME / "checkpoint_manager_snapshot.json"
    has_checkpoints = local_run.exists() if cfg.cluster.storage_path is None else marker.exists()
    if has_checkpoints and marker.exists() and json.loads(marker.read_text())["config_hash"] != digest:
        raise ConfigError(
            f"{train_dir(cfg)} holds checkpoints of another run (its training config — sections "
            f"{', '.join(RESUME_SECTIONS)} — or its prepared shards differ); use another run_dir or delete that folder"
        )
    atomic_write_json(marker, {"config_hash": digest})


def preflight(cfg: Config) -> Plan:
    """Every check that needs no worker: model source, shards, step plan, resumability."""
    from sqltrain.model.loading import ModelSourceError, check_lora_targets, check_model_source
    from sqltrain.raycluster import warn_job_copy

    warn_job_copy({"run_dir": cfg.run_dir, "cluster.storage_path": cfg.cluster.storage_path})
    if cfg.train.use_gpu and cfg.train.gpus_per_worker <= 0:
        raise ConfigError("train.gpus_per_worker must be > 0 when train.use_gpu is true")
    if not cfg.train.use_gpu and cfg.deepspeed.stage == 3 and cfg.quantization.method == "nf4":
        # bitsandbytes repacks NF4 weights for its CPU kernels and cannot unpack a ZeRO-3
        # partition when DeepSpeed saves a checkpoint; on GPUs this combination works.
        raise ConfigError("deepspeed.stage=3 with quantization.method=nf4 needs GPUs (train.use_gpu=true); "
                          "on CPU use stage 2 or quantization.method=none")
    try:
        faults.parse(os.environ.get(faults.ENV))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    plan = plan_steps(cfg, inspect_split(cfg.run_dir, cfg.data.train_split), inspect_split(cfg.run_dir, cfg.data.eval_split))
    try:  # after the cheap checks: this may dequantize a GGUF or materialise a random preset
        check_model_source(cfg.model)
    except ModelSourceError as e:
        raise ConfigError(str(e)) from None
    check_lora_targets(cfg)
    _check_resumable(cfg)
    return plan


def node_paths(cfg: Config, plan: Plan) -> dict[str, list[str]]:
    """What every node must see to train: the shards (Ray Data reads them on any node) and the
    model's local files (every worker loads the model). Random presets and hub ids need none; a
    GGUF's dequantized copy is rebuilt on a node whose model.cache_dir is not shared (slower)."""
    from sqltrain.model.loading import RANDOM_PREFIX, SMOLLM2

    needs = {f"the prepared shards ({cfg.run_dir}/data)": plan.train.files + plan.dev.files}
    for field in ("name", "tokenizer"):
        value = getattr(cfg.model, field)
        if value and value != SMOLLM2 and not value.startswith(RANDOM_PREFIX) and os.path.isabs(value):
            needs[f"model.{field}"] = [value]
    return needs


def check_nodes(cfg: Config, plan: Plan) -> None:
    """Pre-flight on the cluster, before any worker starts: every node must see what the run
    needs, and the checkpoint storage when it is a path (raycluster.check_shared)."""
    from sqltrain.raycluster import check_shared

    if cfg.cluster.check_nodes:
        field = "cluster.storage_path" if cfg.cluster.storage_path else "run_dir"
        storage = cfg.cluster.storage_path or str(train_dir(cfg))
        check_shared(node_paths(cfg, plan), write={f"the checkpoint storage ({field})": storage})


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


def build_trainer(cfg: Config, plan: Plan, callbacks: list | None = None):
    """The TorchTrainer for cfg (ScalingConfig, RunConfig, datasets) without running it."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sqltrain.tracking.callback import training_callbacks
    from sqltrain.train.worker import WorkerPlan, train_loop_per_worker

    t, out = cfg.train, train_dir(cfg)
    resources = {"CPU": t.cpus_per_worker} | ({"GPU": t.gpus_per_worker} if t.use_gpu else {})
    remote = cfg.cluster.storage_path is not None
    run_config = RunConfig(
        # Shared storage holds many runs: each is named by its run_dir and its run id, so two runs
        # never resume each other's checkpoints; locally run_dir/train is ours alone.
        name=storage_run_name(cfg) if remote else RUN_NAME,
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
            "plan": WorkerPlan(total_steps=plan.total_steps, steps_per_epoch=plan.steps_per_epoch),
            "faults": os.environ.get(faults.ENV, ""),
        },
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources,
                                     placement_strategy=cfg.cluster.placement_strategy),
        run_config=run_config,
        # The dev rows go whole to every worker, which takes its own slice (see worker._dev_batches).
        # Read once here (a few hundred rows at most): left lazy, every worker re-ran the read
        # tasks itself (17 s of a 2-worker CPU run, with its read tasks competing for the CPUs).
        datasets={"train": read_split(plan.train), "dev": _read_dev(plan)},
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options=_ordered_ingest()),
    )


def _read_dev(plan: Plan):
    """The first plan.dev_rows dev rows in file order, materialized: the same rows every run."""
    ds = read_split(plan.dev, limit=plan.dev_rows)
    ds.context.execution_options.preserve_order = True  # else limit keeps whichever blocks came first
    return ds.materialize()


def _ordered_ingest():
    """Ray Data's ingest options with preserve_order: each worker gets the same rows in the same
    order on every run, so a resumed run skips exactly the micro batches it had trained on."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True
    return options


def _dev_loss_key(metrics: dict[str, Any]) -> float:
    """Sort key of a checkpoint by dev loss: a missing or non-finite one never counts as best."""
    value = metrics.get("dev_loss")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf


def pick_export(cfg: Config, result) -> tuple[Any, dict[str, Any]]:
    """(checkpoint, its metrics) that becomes the adapter: train.export=best picks the lowest
    finite dev loss among the kept checkpoints, last the latest one."""
    kept = [(c, m) for c, m in result.best_checkpoints if math.isfinite(_dev_loss_key(m))]
    if cfg.train.export == "best" and kept:
        return min(kept, key=lambda cm: _dev_loss_key(cm[1]))
    latest = [(c, m) for c, m in result.best_checkpoints if c.path == result.checkpoint.path]
    return result.checkpoint, (latest[0][1] if latest else dict(result.metrics or {}))


def run_train(cfg: Config, callbacks: list | None = None) -> TrainResult:
    """Train cfg's model on {run_dir}/data shards; returns where the adapter and checkpoints are.
    Raises TrainingDiverged (after exporting the best finite checkpoint) when the run diverged."""
    from sqltrain.raycluster import ensure_ray

    plan = preflight(cfg)
    ensure_ray(cfg.cluster.address, cfg.cluster.runtime_env)
    check_nodes(cfg, plan)
    result = build_trainer(cfg, plan, callbacks).fit()
    rows = read_jsonl(train_dir(cfg) / "metrics.jsonl") if (train_dir(cfg) / "metrics.jsonl").exists() else []
    last = rows[-1] if rows else {}
    diverged = last.get("diverged")
    if result.checkpoint is None:
        if diverged:
            raise TrainingDiverged(f"training diverged at {diverged} before any checkpoint; {_KNOBS}")
        raise RuntimeError(f"training finished without a checkpoint; see {result.path}")
    summary = _export(cfg, plan, result, last, diverged)
    if diverged:
        raise TrainingDiverged(
            f"training diverged at {diverged}; exported the best finite checkpoint (step "
            f"{summary.exported['step']}) to {summary.adapter_dir}, marked diverged; {_KNOBS}")
    return summary


_KNOBS = "lower train.lr, raise train.warmup_ratio or lower train.max_grad_norm, or try train.compile=false"


def _export(cfg: Config, plan: Plan, result, last: dict[str, Any], diverged: str | None) -> TrainResult:
    """Install the chosen checkpoint's adapter (with training.json) and write summary.json."""
    from sqltrain.train.checkpoints import install_adapter

    out = train_dir(cfg)
    chosen, chosen_metrics = pick_export(cfg, result)
    kept = [(c, m) for c, m in result.best_checkpoints if math.isfinite(_dev_loss_key(m))]
    best = min(kept, key=lambda cm: _dev_loss_key(cm[1]), default=None)
    exported = {"policy": cfg.train.export, "step": chosen_metrics.get("step"),
                "dev_loss": chosen_metrics.get("dev_loss"), "path": chosen.path,
                "is_last": chosen.path == result.checkpoint.path}
    training = {"run_id": run_id(cfg), "exported": exported, "skipped_steps": last.get("skipped_steps", 0),
                "steps": last.get("step"), "planned_steps": plan.total_steps, "diverged": diverged}
    adapter = install_adapter(chosen, out / "adapter", training)
    summary = TrainResult(
        adapter_dir=str(adapter), exported=exported, checkpoint_dir=result.checkpoint.path,
        best_checkpoint_dir=best[0].path if best else None, metrics=last,
        metrics_path=str(out / "metrics.jsonl"), steps=plan.total_steps,
        skipped_steps=int(last.get("skipped_steps", 0)), diverged=diverged,
    )
    atomic_write_json(out / "summary.json", asdict(summary))
    return summary
