"""Hyperparameter search: Tuner -> trial driver function -> TorchTrainer -> worker loop.

Each Tune trial runs `run_trial`, a plain driver function: it applies the sampled values to the
base config, gives the trial its own run_dir ({run_dir}/tune/<trial_id>, whose data/ links to the
base run's prepared shards) and calls the training driver `run_train`, which builds and fits
the trial's TorchTrainer. Dev-loss reports flow from the Train run to Tune as they happen (so
ASHA can stop a trial early); the trial ends with one report carrying the final metric and the
adapter path. The Tuner never wraps a trainer directly (the Ray Train V2 composition).

Outputs: {run_dir}/tune/<trial_id>/train/ per trial (as `sqltrain train` writes), Tune's own
experiment folder under {run_dir}/tune/ (or cluster.storage_path), and
{run_dir}/tune/results.json: every trial's sampled config, metric, status and adapter path, plus
the best trial.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.train import UserCallback

from sqltrain.config import Config, ConfigError
from sqltrain.io import atomic_write_json
from sqltrain.typed_json import JsonRecord
from sqltrain.tune.search import (
    DRIVER_CPUS, Param, make_scheduler, max_concurrency, parse_search_space, to_tune_space, with_values,
)


def tune_dir(cfg: Config) -> Path:
    return Path(cfg.run_dir) / "tune"


class DevReports(UserCallback):
    """Forwards to Tune only the Train reports that carry the tuned metric (the dev loss is
    computed at eval steps; log-only reports lack it, and Tune rejects results without it).

    A Ray Train callback (the public `UserCallback` hook) that hands the reports it keeps to
    Ray's own Train-to-Tune forwarder, `TuneReportCallback`, as Ray documents it; made inside
    the trial, where Tune's session is."""

    def __init__(self, metric: str):
        from ray.tune.integration.ray_train import TuneReportCallback

        self.metric = metric
        self.forward = TuneReportCallback()

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if self.metric in metrics[0]:
            self.forward.after_report(run_context, metrics, checkpoint)


def trial_config(base: dict[str, Any], sampled: dict[str, Any], trial_id: str) -> Config:
    """The base config with the trial's sampled values, writing under {run_dir}/tune/<trial_id>
    (its training metrics go to the base run's tracking run, under tune/<trial_id>/)."""
    return with_values(base, {**sampled, "run_dir": f"{base['run_dir']}/tune/{trial_id}",
                              "tracking.prefix": f"tune/{trial_id}"})


def _share_data(base_run_dir: str, trial_run_dir: str) -> None:
    """Trials train on the base run's shards: {trial}/data is a link to {base}/data."""
    link = Path(trial_run_dir) / "data"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink(Path(base_run_dir) / "data", link, target_is_directory=True)


def run_trial(sampled: dict[str, Any], base: dict[str, Any]) -> None:
    """One Tune trial (runs in a Tune actor): train with the sampled values, report the result."""
    import ray.tune

    from sqltrain.train.driver import run_train

    cfg = trial_config(base, sampled, ray.tune.get_context().get_trial_id())
    _share_data(base["run_dir"], cfg.run_dir)
    metric = cfg.tune.metric
    result = run_train(cfg, callbacks=[DevReports(metric)])
    if metric not in result.metrics:
        reported = ", ".join(sorted(result.metrics))
        raise ConfigError(f"tune.metric={metric!r} is not a training metric; the last report has: {reported}")
    ray.tune.report({
        metric: result.metrics[metric], "step": result.metrics["step"], "adapter_dir": result.adapter_dir,
        "best_checkpoint_dir": result.best_checkpoint_dir, "run_dir": cfg.run_dir,
    })


def build_tuner(cfg: Config, concurrency: int, params: list[Param]):
    """The Tuner over params (cfg.tune.search_space, parsed); each trial is run_trial on a copy of cfg."""
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(run_trial, base=cfg.to_dict()), {"CPU": DRIVER_CPUS})
    return tune.Tuner(
        trainable,
        param_space=to_tune_space(params),
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric, mode=cfg.tune.mode, num_samples=cfg.tune.num_samples,
            max_concurrent_trials=concurrency, scheduler=make_scheduler(cfg),
        ),
        # Shared storage when configured (multi-node); the trials' own outputs stay in run_dir.
        run_config=tune.RunConfig(storage_path=cfg.cluster.storage_path or str(tune_dir(cfg))),
    )


def error_line(error: BaseException) -> str:
    """"<type>: <first line>" of what failed a trial, from the exception objects themselves:
    Ray's task error gives way to its `cause`; a failed Train run (ray.train.WorkerGroupError)
    adds its first failing worker's error. The whole error is in the trial's folder of the Tune
    experiment."""
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    while isinstance(error, RayTaskError) and error.cause is not None:
        error = error.cause
    line = _type_and_first_line(error)
    if isinstance(error, WorkerGroupError) and error.worker_failures:
        rank, failure = min(error.worker_failures.items(), key=lambda kv: kv[0])
        while isinstance(failure, RayTaskError) and failure.cause is not None:
            failure = failure.cause
        line += f" rank {rank}: {_type_and_first_line(failure)}"
    return line


def _type_and_first_line(error: BaseException) -> str:
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    text = str(error).strip()
    return f"{name}: {text.splitlines()[0]}" if text else name


def _status(result, metric: str) -> str:
    if result.error:
        return "error"
    if metric not in (result.metrics or {}):
        return "no result"  # interrupted before its first dev evaluation
    # Only a trial that ran to its end makes the final report carrying the adapter path.
    return "completed" if "adapter_dir" in result.metrics else "stopped early"


def trial_record(result, cfg: Config) -> dict[str, Any]:
    """One trial of the ResultGrid as results.json lists it."""
    m = result.metrics or {}
    trial_id = m["trial_id"]  # Tune fills it in every result, even a trial's that never reported
    return {
        "trial_id": trial_id,
        "config": {k: (v.item() if hasattr(v, "item") else v) for k, v in (result.config or {}).items()},
        "metric": m.get(cfg.tune.metric),
        "step": m.get("step"),
        "status": _status(result, cfg.tune.metric),
        "run_dir": f"{cfg.run_dir}/tune/{trial_id}",
        "adapter_dir": m.get("adapter_dir"),
        "checkpoint": m.get("best_checkpoint_dir") or m.get("checkpoint_path"),
        "error": error_line(result.error) if result.error else None,
    }


class TuneResult(JsonRecord):
    """{run_dir}/tune/results.json."""

    metric: str
    mode: str
    experiment_path: str
    """Tune's own experiment folder (its per-trial result.json files)."""
    best: dict[str, Any] | None
    """The best completed trial (one with an adapter), None when no trial completed."""
    trials: list[dict[str, Any]]
    """Every trial (see trial_record): completed ones best first, then the others."""


def summarize_trials(trials: list[dict[str, Any]], cfg: Config, experiment_path: str) -> TuneResult:
    """results.json: completed trials best first, then the others by their last metric; the best
    is the best completed trial (one with an adapter), None when no trial completed."""
    sign = 1 if cfg.tune.mode == "min" else -1

    def rank(t: dict[str, Any]) -> tuple:
        return (t["status"] != "completed", t["metric"] is None, sign * (t["metric"] or 0.0))

    ordered = sorted(trials, key=rank)
    best = ordered[0] if ordered and ordered[0]["status"] == "completed" else None
    return TuneResult(metric=cfg.tune.metric, mode=cfg.tune.mode, experiment_path=experiment_path,
                      best=best, trials=ordered)


def _check_shards(cfg: Config) -> None:
    """Fail before Ray starts when the base run has no prepared shards."""
    from sqltrain.train.data import inspect_split

    for split in (cfg.data.train_split, cfg.data.eval_split):
        inspect_split(cfg.run_dir, split)


def run_tune(cfg: Config, log=print) -> TuneResult:
    """Search cfg.tune.search_space; write and return {run_dir}/tune/results.json's content
    (its best is None when no trial completed)."""
    import ray

    params = parse_search_space(cfg.tune.search_space, cfg)  # bad spaces fail before Ray starts
    _check_shards(cfg)
    from sqltrain.raycluster import ensure_ray
    from sqltrain.tracking.log import log_tune

    ensure_ray(cfg.cluster.address, cfg.cluster.runtime_env)
    concurrency, why = max_concurrency(cfg, ray.cluster_resources())
    log(f"[sqltrain] tune: {cfg.tune.num_samples} trial(s), {cfg.tune.scheduler}, {why}")
    grid = build_tuner(cfg, concurrency, params).fit()
    summary = summarize_trials([trial_record(r, cfg) for r in grid], cfg, grid.experiment_path)
    atomic_write_json(tune_dir(cfg) / "results.json", summary.to_json())
    log_tune(cfg, summary.to_json(), tune_dir(cfg) / "results.json")
    return summary
