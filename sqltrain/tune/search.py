"""The search: which config keys a tune samples, how, how many trials at once, which scheduler.

`tune.search_space` maps a dotted config key to one distribution, e.g.

    train.lr: {loguniform: [5.0e-5, 5.0e-4]}
    lora.r:   {choice: [8, 16, 32]}

Everything here is checked before Ray starts: a typo in a key, an unknown distribution or a
value the config field would reject fails in milliseconds with the key named, not minutes later
inside a trial. Nothing in this module imports Ray at import time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sqltrain.config import Config, ConfigError, apply_override, config_from_dict
from sqltrain.stages import tunable_sections

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
"""choice: [v, ...]; uniform / loguniform: [low, high] floats; randint: [low, high) integers
(high excluded, as in ray.tune.randint)."""

TUNABLE_SECTIONS = tunable_sections()
"""Sections a trial may change (from the stage registry: train's own sections). All trials
share the base run's prepared shards, so keys that change them (data, linking, prompt, model:
the tokenizer) cannot vary per trial; generate, evaluate, tune and cluster do not affect
training at all."""

DRIVER_CPUS = 0.25
"""CPU each trial's driver process (Tune trial -> TorchTrainer controller) asks for. It only
starts and watches the Train run; the workers ask for their own resources."""
DATA_CPUS = 1.0
"""CPUs left free for Ray Data's read tasks: train workers that take every CPU starve them."""
ASHA_MAX_T = 10**9
"""ASHA's cap on `step`. Each trial ends when its own training plan does (train.max_steps or
epochs, which the search may vary), so the cap only has to exceed any plan; the rungs that
decide early stops come from grace_period and the reduction factor."""


@dataclass(frozen=True)
class Param:
    key: str
    """Dotted config key, e.g. "train.lr"."""
    distribution: str
    args: tuple


def _where(key: str) -> str:
    return f"tune.search_space[{key!r}]"


def _check_key(key: str) -> None:
    """The key must name a field of a section that can change between trials."""
    section, _, field = key.partition(".")
    if section not in Config.model_fields:
        raise ConfigError(f"{_where(key)}: {key!r} is not a config field; sections: {', '.join(Config.model_fields)}")
    model = Config.model_fields[section].annotation
    if isinstance(model, type) and issubclass(model, BaseModel) and field not in model.model_fields:
        known = ", ".join(model.model_fields)
        raise ConfigError(f"{_where(key)}: {key!r} is not a config field; {section} has: {known}")
    if section not in TUNABLE_SECTIONS:
        raise ConfigError(
            f"{_where(key)}: {section} cannot vary between trials (all trials train on the base run's "
            f"prepared shards); tunable: {', '.join(s + '.*' for s in TUNABLE_SECTIONS)}"
        )


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_args(key: str, dist: str, args: Any) -> tuple:
    where = f"{_where(key)}.{dist}"
    if dist == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: expected a non-empty list of values, got {args!r}")
        return tuple(args)
    if not (isinstance(args, list) and len(args) == 2 and all(_number(a) for a in args)):
        raise ConfigError(f"{where}: expected [low, high] numbers, got {args!r}")
    low, high = args
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got [{low}, {high}]")
    if dist == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: bounds must be > 0, got [{low}, {high}]")
    if dist == "randint":
        if not all(isinstance(a, int) for a in args):
            raise ConfigError(f"{where}: bounds must be integers, got {args!r}")
        return (low, high)
    return (float(low), float(high))


def _samples(p: Param) -> list[Any]:
    """Values that stand for everything the distribution can draw (its extremes or options)."""
    if p.distribution == "choice":
        return list(p.args)
    if p.distribution == "randint":
        return [p.args[0], p.args[1] - 1]
    return list(p.args)


def with_values(base: dict[str, Any], values: dict[str, Any]) -> Config:
    """The base config (a dict) with dotted keys set to sampled values, validated."""
    data = json.loads(json.dumps(base))
    for key, value in values.items():
        value = value.item() if hasattr(value, "item") else value  # numpy scalars from Tune samplers
        apply_override(data, f"{key}={json.dumps(value)}")  # JSON is YAML: the value keeps its type
    return config_from_dict(data)


def parse_search_space(space: dict[str, dict[str, Any]], base: Config) -> list[Param]:
    """Check cfg.tune.search_space against the config; raise ConfigError naming the bad key."""
    if not space:
        raise ConfigError("tune.search_space is empty: give at least one key -> {distribution: args}")
    params, base_dict = [], base.to_dict()
    for key, spec in space.items():
        _check_key(key)
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ConfigError(f"{_where(key)}: expected one {{distribution: args}}, got {spec!r}")
        (dist, args), = spec.items()
        if dist not in DISTRIBUTIONS:
            raise ConfigError(f"{_where(key)}: unknown distribution {dist!r}; known: {', '.join(DISTRIBUTIONS)}")
        p = Param(key, dist, _check_args(key, dist, args))
        for value in _samples(p):
            try:
                with_values(base_dict, {key: value})
            except ConfigError as e:
                detail = str(e).split("\n", 1)[-1].strip()
                raise ConfigError(f"{_where(key)}.{dist}: {key} rejects {value!r}: {detail}") from None
        params.append(p)
    return params


def to_tune_space(params: list[Param]) -> dict[str, Any]:
    """The param_space for ray.tune.Tuner: flat {dotted key: Tune domain}."""
    from ray import tune

    make = {"choice": lambda a: tune.choice(list(a)), "uniform": lambda a: tune.uniform(*a),
            "loguniform": lambda a: tune.loguniform(*a), "randint": lambda a: tune.randint(*a)}
    return {p.key: make[p.distribution](p.args) for p in params}


def make_scheduler(cfg: Config):
    """asha: stop trials whose dev metric trails at a rung (rungs in optimizer steps, the first
    at the first dev evaluation); fifo: run every trial to its end."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if cfg.tune.scheduler == "fifo":
        return FIFOScheduler()
    first_eval = min(cfg.train.eval_every, cfg.train.save_every)  # a save step evaluates too
    return ASHAScheduler(time_attr="step", max_t=ASHA_MAX_T, grace_period=max(1, first_eval))


def max_concurrency(cfg: Config, cluster: dict[str, float]) -> tuple[int, str]:
    """Trials run at once: tune.max_concurrent_trials, capped by num_samples and by how many
    trials' workers fit in the cluster's GPUs (use_gpu) and CPUs. Returns (n, why)."""
    t = cfg.train
    wanted = min(cfg.tune.max_concurrent_trials, cfg.tune.num_samples)
    trial_cpus = DRIVER_CPUS + t.num_workers * t.cpus_per_worker
    fits = {"CPU": math.floor((cluster.get("CPU", 0.0) - DATA_CPUS) / trial_cpus + 1e-9)}
    need = f"{trial_cpus:g} CPU"
    if t.use_gpu:
        trial_gpus = t.num_workers * t.gpus_per_worker
        fits["GPU"] = math.floor(cluster.get("GPU", 0.0) / trial_gpus + 1e-9)
        need += f" + {trial_gpus:g} GPU"
    have = ", ".join(f"{cluster.get(r, 0.0):g} {r}" for r in fits)
    fit = min(fits.values())
    if fit < 1:
        return 1, (f"a trial needs {need} and the cluster has {have} now: running one trial at a time "
                   "(an autoscaling cluster adds nodes when the trial asks)")
    n = min(wanted, fit)
    return n, f"{n} trial(s) at once: tune.max_concurrent_trials={cfg.tune.max_concurrent_trials}, " \
              f"num_samples={cfg.tune.num_samples}, {fit} fit ({need} each; cluster {have})"
