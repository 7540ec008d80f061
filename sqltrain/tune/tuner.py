"""Hyperparameter search: Tuner -> trial driver function -> TorchTrainer -> worker loop.

Each Tune trial runs `run_trial`, a plain driver function: it applies the sampled values to the
base config, gives the trial its own run_dir ({run_dir}/tune/<trial_id>, whose data/ links to the
base run's prepared shards) and calls the training driver `run_train`, which builds and fits
the trial's TorchTrainer. Dev-loss reports flow from the Train run to Tune as they happen (so
ASHA can stop a trial early); the trial ends with one report carrying the final metric and the
adapter path. The Tuner never wraps a trainer directly (the Ray Train V2 composition).
Tune itself always ranks and schedules on the dev loss (what trials report); tune.metric=ex
then scores each completed trial's adapter by execution accuracy (sqltrain.tune.scoring).

The experiment lives at a fixed path ({storage}/<run_dir name>-tune), so `--resume` can
continue it after a crash (`Tuner.restore`); without --resume an existing one is an error.

Outputs: {run_dir}/tune/<trial_id>/train/ per trial (as `sqltrain train` writes), Tune's own
experiment folder under {run_dir}/tune/ (or cluster.storage_path), and
{run_dir}/tune/results.json: every trial's sampled config, metric, status and adapter path, plus
the best trial; {run_dir}/tune/best.yaml: the best trial's full config (for `sqltrain pipeline`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.train import UserCallback
from ray.tune import Callback

from sqltrain.config import Config, ConfigError
from sqltrain.io import atomic_write_json, atomic_write_text
from sqltrain.typed_json import JsonRecord
from sqltrain.tune.report import results_markdown
from sqltrain.tune.scoring import score_trials, trial_config, trial_run_dir, write_best_yaml
from sqltrain.tune.search import DRIVER_CPUS, Param, make_scheduler, max_concurrency, parse_search_space, to_tune_space

TRIAL_METRIC = "dev_loss"
"""What trials report to Tune while training, and what ASHA decides on, whatever tune.metric is."""
ENDED = "tune_ended"
"""Marker in a trial's run_dir: Tune ended the trial (completed, or stopped by the scheduler)."""


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


def experiment_path(cfg: Config) -> str:
    """Tune's experiment folder: fixed per run_dir, so a crashed search can be restored."""
    storage = cfg.cluster.storage_path or str(tune_dir(cfg))
    return f"{storage.rstrip('/')}/{Path(cfg.run_dir).name}-tune"


class TrialEnds(Callback):
    """Marks each trial that Tune ended (ran to its end, or stopped by ASHA) in its run_dir: a
    trial without the mark was interrupted (the search crashed or was stopped), not stopped
    early. A public Tune callback: Tune calls on_trial_complete for exactly those trials."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        atomic_write_text(Path(trial_run_dir(self.run_dir, trial.trial_id)) / ENDED, "")


def run_trial(sampled: dict[str, Any], base: dict[str, Any]) -> None:
    """One Tune trial (runs in a Tune actor): train with the sampled values, report the result."""
    import ray.tune

    from sqltrain.train.driver import run_train

    from sqltrain.prep.pipeline import share_prepared_data

    cfg = trial_config(base, sampled, ray.tune.get_context().get_trial_id())
    share_prepared_data(base["run_dir"], cfg.run_dir)  # trials train on the base run's shards
    result = run_train(cfg, callbacks=[DevReports(TRIAL_METRIC)])
    ray.tune.report({
        TRIAL_METRIC: result.metrics[TRIAL_METRIC], "step": result.metrics["step"], "adapter_dir": result.adapter_dir,
        "best_checkpoint_dir": result.best_checkpoint_dir, "run_dir": cfg.run_dir,
    })


def _trainable(cfg: Config):
    from ray import tune

    return tune.with_resources(tune.with_parameters(run_trial, base=cfg.to_dict()), {"CPU": DRIVER_CPUS})


def build_tuner(cfg: Config, concurrency: int, params: list[Param]):
    """The Tuner over params (cfg.tune.search_space, parsed); each trial is run_trial on a copy of cfg."""
    from ray import tune

    path = experiment_path(cfg)
    storage, name = path.rsplit("/", 1)
    return tune.Tuner(
        _trainable(cfg),
        param_space=to_tune_space(params),
        tune_config=tune.TuneConfig(
            metric=TRIAL_METRIC, mode="min", num_samples=cfg.tune.num_samples,
            max_concurrent_trials=concurrency, scheduler=make_scheduler(cfg),
        ),
        # Shared storage when configured (multi-node); the trials' own outputs stay in run_dir.
        run_config=tune.RunConfig(storage_path=storage, name=name, callbacks=[TrialEnds(cfg.run_dir)]),
    )


def check_experiment(cfg: Config, resume: bool) -> bool:
    """Before Ray starts: --resume needs an experiment to restore, a new search needs none.
    Returns whether to restore."""
    from ray import tune

    path = experiment_path(cfg)
    exists = tune.Tuner.can_restore(path)
    if resume and not exists:
        raise ConfigError(f"--resume: no tune experiment at {path} to resume; run without --resume to start one")
    if exists and not resume:
        raise ConfigError(f"a tune experiment already exists at {path}: add --resume to continue it, "
                          "or remove it (or set another run_dir) to start a new search")
    return exists


def restore_tuner(cfg: Config):
    """The crashed or stopped search at experiment_path, as Tune saved it (its search space and
    trials): unfinished trials run again, errored ones stay errored."""
    from ray import tune

    return tune.Tuner.restore(experiment_path(cfg), trainable=_trainable(cfg), resume_unfinished=True,
                              resume_errored=False, restart_errored=False)


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


def _status(result, ended: bool) -> str:
    if result.error:
        return "error"
    m = result.metrics or {}
    if "adapter_dir" in m:
        return "completed"  # only a trial that ran to its end reports the adapter path
    if not ended:
        return "interrupted"  # Tune did not end it: the search stopped while it was pending or running
    return "stopped early" if TRIAL_METRIC in m else "no result"


def trial_record(result, cfg: Config) -> dict[str, Any]:
    """One trial of the ResultGrid as results.json lists it."""
    m = result.metrics or {}
    trial_id = m["trial_id"]  # Tune fills it in every result, even a trial's that never reported
    run_dir = trial_run_dir(cfg.run_dir, trial_id)
    return {
        "trial_id": trial_id,
        "config": {k: (v.item() if hasattr(v, "item") else v) for k, v in (result.config or {}).items()},
        "metric": m.get(TRIAL_METRIC) if cfg.tune.metric == TRIAL_METRIC else None,  # ex: set by add_ex
        "dev_loss": m.get(TRIAL_METRIC),
        "ex": None,
        "step": m.get("step"),
        "status": _status(result, (Path(run_dir) / ENDED).exists()),
        "run_dir": run_dir,
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
    """results.json: completed trials best first, then the others by their last metric (ties,
    common in ex on few questions, go to the lower dev loss); the best is the best completed
    trial (one with an adapter), None when no trial completed."""
    sign = 1 if cfg.tune.mode == "min" else -1

    def rank(t: dict[str, Any]) -> tuple:
        dev_loss = t.get("dev_loss")
        return (t["status"] != "completed", t["metric"] is None, sign * (t["metric"] or 0.0),
                float("inf") if dev_loss is None else dev_loss, t["trial_id"])  # same order after a restore

    ordered = sorted(trials, key=rank)
    best = ordered[0] if ordered and ordered[0]["status"] == "completed" else None
    return TuneResult(metric=cfg.tune.metric, mode=cfg.tune.mode, experiment_path=experiment_path,
                      best=best, trials=ordered)


def _check_shards(cfg: Config) -> None:
    """Fail before Ray starts when the base run has no prepared shards."""
    from sqltrain.train.data import inspect_split

    for split in (cfg.data.train_split, cfg.data.eval_split):
        inspect_split(cfg.run_dir, split)


def add_ex(trials: list[dict[str, Any]], cfg: Config, log=print) -> None:
    """tune.metric=ex: score every completed trial (in place); a trial whose generation or
    evaluation fails becomes an error with that line."""
    completed = [t for t in trials if t["status"] == "completed"]
    scores = score_trials(cfg, completed, log) if completed else {}
    for t in completed:
        score = scores[t["trial_id"]]
        if isinstance(score, Exception):  # one trial's failure must not lose the others' scores
            t["status"], t["error"] = "error", error_line(score)
        else:
            t["ex"] = t["metric"] = score


def run_tune(cfg: Config, resume: bool = False, log=print) -> TuneResult:
    """Search cfg.tune.search_space (or continue the search at experiment_path when resume);
    write and return {run_dir}/tune/results.json's content (its best is None when no trial
    completed) and best.yaml."""
    import ray

    params = parse_search_space(cfg.tune.search_space, cfg)  # bad spaces fail before Ray starts
    _check_shards(cfg)
    restore = check_experiment(cfg, resume)
    from sqltrain.raycluster import ensure_ray
    from sqltrain.tracking.log import log_tune

    ensure_ray(cfg.cluster.address, cfg.cluster.runtime_env)
    concurrency, why = max_concurrency(cfg, ray.cluster_resources())
    if restore:
        log(f"[sqltrain] tune: resuming {experiment_path(cfg)}")
    else:
        log(f"[sqltrain] tune: {cfg.tune.num_samples} trial(s), {cfg.tune.scheduler}, {why}")
    grid = (restore_tuner(cfg) if restore else build_tuner(cfg, concurrency, params)).fit()
    trials = [trial_record(r, cfg) for r in grid]
    if cfg.tune.metric == "ex":
        add_ex(trials, cfg, log)
    summary = summarize_trials(trials, cfg, grid.experiment_path)
    best_yaml = tune_dir(cfg) / "best.yaml"
    if summary.best is not None:
        write_best_yaml(cfg, summary.best, best_yaml)
    else:
        best_yaml.unlink(missing_ok=True)  # an earlier search's winner is not this one's
    atomic_write_json(tune_dir(cfg) / "results.json", summary.to_json())
    atomic_write_text(tune_dir(cfg) / "results.md", results_markdown(summary.to_json(), cfg.data.eval_split))
    log_tune(cfg, summary.to_json(), tune_dir(cfg) / "results.json")
    return summary
