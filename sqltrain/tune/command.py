"""`sqltrain tune --config FILE [key.sub=value ...]`: hyperparameter search with Ray Tune.

Samples tune.num_samples trials from tune.search_space (dotted config keys, e.g. train.lr or
lora.r, each {choice|uniform|loguniform|randint: args}); each trial trains like `sqltrain train`
on the prepared shards of {run_dir}/data (run `sqltrain prepare` with this config first) and
writes {run_dir}/tune/<trial_id>/train/. tune.scheduler asha stops trials whose dev loss trails.
tune.metric ranks the trials: dev_loss, or ex (each completed trial's adapter generates on
tune.eval_split, optionally its first tune.eval_limit questions, and its SQL is executed in the
sandbox; the execution accuracy ranks). Writes {run_dir}/tune/results.json (every trial's
values, metric, dev loss, ex, status and adapter), {run_dir}/tune/results.md (the same as a
table, and each trial's dev loss by step) and {run_dir}/tune/best.yaml (the best trial's
full config: `sqltrain pipeline --config {run_dir}/tune/best.yaml` trains with it), and prints
the best. --resume continues a search that crashed or was stopped (Tune's saved experiment).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune",
        help="hyperparameter search with Ray Tune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="experiment YAML with a tune section (see configs/tune-*.yaml)")
    p.add_argument("--resume", action="store_true",
                   help="continue this run_dir's search after a crash or stop (Tuner.restore)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. tune.num_samples=8 tune.scheduler=fifo")
    p.set_defaults(func=_tune)


def _print_summary(summary, results_path) -> None:
    metric = summary.metric
    print(f"\n{'trial':<14}{metric:>12}{'step':>7}  {'status':<14}values")
    for t in summary.trials:
        value = "-" if t["metric"] is None else f"{t['metric']:.4f}"
        values = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["config"].items())
        print(f"{t['trial_id']:<14}{value:>12}{t['step'] or '-':>7}  {t['status']:<14}{values}")
    best = summary.best
    if best is not None:
        print(f"\nbest: {best['trial_id']} {metric}={best['metric']:.4f} ({summary.mode})")
        print(f"adapter: {best['adapter_dir']}")
        print(f"config: {Path(results_path).parent / 'best.yaml'} (sqltrain pipeline --config it)")
    print(f"results: {results_path}")


def _tune(args: argparse.Namespace) -> int:
    from sqltrain.config import load_config
    from sqltrain.tune.tuner import run_tune, tune_dir

    cfg = load_config(args.config, args.overrides)
    summary = run_tune(cfg, resume=args.resume)
    _print_summary(summary, tune_dir(cfg) / "results.json")
    if summary.best is None:
        print("sqltrain tune: no trial completed (see the errors above and in results.json)", file=sys.stderr)
        return 1
    return 0
