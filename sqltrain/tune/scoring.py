"""tune.metric=ex: execution accuracy of each completed trial's adapter, and best.yaml.

A trial's EX is scored by the generate and evaluate stages themselves (`generate_for_adapters`:
the trials' adapters on tune.eval_split in one pass, then `run_evaluate` per trial, which
executes every SQL in the sandbox), in the driver once the search has ended. Not inside the
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


def score_trials(base: Config, trials: list[dict[str, Any]], log=print) -> dict[str, float | Exception]:
    """EX of each completed trial's adapter on tune.eval_split (its first tune.eval_limit
    questions), by trial id; a trial that could not be scored maps to its exception. The
    adapters not scored yet generate together (generate_for_adapters: one engine start for all
    that share a prompt setup and decoding settings; one bad adapter costs only its own score),
    then each is evaluated on its own."""
    from sqltrain.generate.pipeline import generate_for_adapters

    scores: dict[str, float | Exception] = {}
    pending = []
    for t in trials:
        cfg = trial_config(base.to_dict(), {**t["config"], "generate.limit": base.tune.eval_limit}, t["trial_id"])
        summary = Path(t["run_dir"]) / "eval" / score_name(cfg) / "summary.json"
        if summary.is_file():
            scores[t["trial_id"]] = float(json.loads(summary.read_text())["ex"])
        else:
            pending.append((t, cfg))
    errors = generate_for_adapters([(cfg, t["adapter_dir"], _predictions(t, cfg)) for t, cfg in pending],
                                   base.tune.eval_split, log)
    for (t, cfg), error in zip(pending, errors):
        scores[t["trial_id"]] = error if error is not None else _evaluate(t, cfg, log)
    return scores


def _predictions(trial: dict[str, Any], cfg: Config) -> Path:
    return Path(trial["run_dir"]) / "predictions" / f"{score_name(cfg)}.jsonl"


def _evaluate(trial: dict[str, Any], cfg: Config, log) -> float | Exception:
    from sqltrain.evaluate.runner import run_evaluate

    name, split = score_name(cfg), cfg.tune.eval_split
    try:
        out = Path(trial["run_dir"]) / "eval" / name
        ex = run_evaluate(cfg, _predictions(trial, cfg), out_dir=out, split=split, progress=False).ex
    except Exception as e:  # noqa: BLE001 - recorded as this trial's error
        return e
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
