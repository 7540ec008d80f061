"""tune.metric=ex: execution accuracy of each completed trial's adapter, and best.yaml.

A trial's EX is scored by the generate and evaluate stages themselves (`run_generate` with the
trial's adapter on tune.eval_split, then `run_evaluate`, which executes every SQL in the
sandbox), in the driver once the search has ended, one trial after another. Not inside the
trial: its driver holds a CPU slot, and the generation replicas size themselves from the whole
cluster (every CPU of a CPU-only one), so they could never start there; after the search each
trial's generation gets every replica the cluster holds.

Outputs per trial, reused when present (a resumed search scores only what is new):
{trial run_dir}/predictions/tune-<split>-<limit>.jsonl and {trial run_dir}/eval/tune-<split>-<limit>/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from sqltrain.config import Config
from sqltrain.io import atomic_write_text
from sqltrain.tune.search import with_values


def trial_run_dir(base_run_dir: str, trial_id: str) -> str:
    """Where a trial writes: {run_dir}/tune/<trial_id>."""
    return f"{base_run_dir}/tune/{trial_id}"


def trial_config(base: dict[str, Any], sampled: dict[str, Any], trial_id: str) -> Config:
    """The base config with the trial's sampled values, writing under {run_dir}/tune/<trial_id>
    (its training metrics go to the base run's tracking run, under tune/<trial_id>/)."""
    return with_values(base, {**sampled, "run_dir": trial_run_dir(base["run_dir"], trial_id),
                              "tracking.prefix": f"tune/{trial_id}"})


def score_name(cfg: Config) -> str:
    """tune-<split>-<limit|all>: what was scored is in the name, so a changed limit re-scores."""
    return f"tune-{cfg.tune.eval_split}-{cfg.tune.eval_limit or 'all'}"


def score_trial(base: Config, trial: dict[str, Any], log=print) -> float:
    """EX of a completed trial's adapter on tune.eval_split (its first tune.eval_limit questions)."""
    from sqltrain.evaluate.runner import run_evaluate
    from sqltrain.generate.pipeline import run_generate

    cfg = trial_config(base.to_dict(), {**trial["config"], "generate.limit": base.tune.eval_limit}, trial["trial_id"])
    run, name, split = Path(trial["run_dir"]), score_name(cfg), cfg.tune.eval_split
    summary = run / "eval" / name / "summary.json"
    if summary.is_file():
        return float(json.loads(summary.read_text())["ex"])
    predictions = run / "predictions" / f"{name}.jsonl"
    run_generate(cfg, adapter=trial["adapter_dir"], split=split, out=predictions, log=log)
    ex = run_evaluate(cfg, predictions, out_dir=summary.parent, split=split, progress=False).ex
    log(f"[sqltrain] tune: trial {trial['trial_id']} ex={ex:.4f} on {split} ({name})")
    return ex


def write_best_yaml(base: Config, best: dict[str, Any], path: Path) -> None:
    """{run_dir}/tune/best.yaml: the base config with the best trial's values, a header naming the
    trial: a `sqltrain pipeline` config that trains in the base run_dir (whose prepared data it
    reuses) with what won the search."""
    cfg = with_values(base.to_dict(), best["config"])
    header = (f"# Best trial of `sqltrain tune` ({base.tune.metric}={best['metric']:.4f}, {base.tune.mode}): "
              f"{best['trial_id']}\n# its adapter: {best['adapter_dir']}\n"
              f"# reproduce: sqltrain pipeline --config {path}\n")
    atomic_write_text(path, header + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
