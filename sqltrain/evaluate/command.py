"""`sqltrain evaluate`: execution accuracy (and exact-set match) of a predictions file.

    sqltrain evaluate --spider-dir DIR --split dev --predictions FILE --out OUTDIR
                      [--exclude KNOWN_GAPS.tsv] [--timeout S] [--config FILE] [key.sub=value ...]

Options left out come from the config (data.spider_dir, data.eval_split, data.exclude,
evaluate.timeout_s; --out defaults to {run_dir}/eval/<predictions file stem>).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="sandboxed execution accuracy of predicted SQL",
        description="Execute predicted and gold SQL in a read-only sandbox, compare results with test-suite "
        "semantics and write OUT/summary.json + OUT/records.jsonl.",
    )
    p.add_argument(
        "--spider-dir", help='Spider-layout dir, or "mini" for the embedded mini benchmark (default: data.spider_dir)'
    )
    p.add_argument("--split", help="split the predictions index into (default: data.eval_split); "
                   "validation = the train databases data.validation holds out")
    p.add_argument(
        "--predictions", required=True,
        help="JSONL ({index, sql} per line) or text (one SQL per line, optionally TAB db_id)",
    )
    p.add_argument("--out", help="output dir (default: {run_dir}/eval/<predictions file stem>)")
    p.add_argument("--exclude", help="KNOWN_GAPS.tsv-format list of examples to leave out (default: data.exclude)")
    p.add_argument("--timeout", type=float, help="per-query time limit in seconds (default: evaluate.timeout_s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--config", help="YAML config file (defaults for the options above)")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from sqltrain.config import ConfigError, load_config
    from sqltrain.data import validation_carve
    from sqltrain.evaluate.metrics import format_summary
    from sqltrain.evaluate.runner import evaluate_file

    if not args.predictions.strip():  # it also names the default --out: refuse before anything else
        from sqltrain.evaluate.predictions import PredictionsError

        raise PredictionsError("--predictions is empty: give a JSONL or text predictions file")
    overrides = list(args.overrides)
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError(f"--timeout {args.timeout}: evaluate.timeout_s must be a finite number of seconds > 0")
    if args.timeout is not None:
        overrides.append(f"evaluate.timeout_s={float(args.timeout)}")
    cfg = load_config(args.config, overrides)
    # An option given empty is an error downstream, not a silent fallback to the default.
    out = args.out if args.out is not None else str(Path(cfg.run_dir) / "eval" / Path(args.predictions).stem)
    summary = evaluate_file(
        args.spider_dir if args.spider_dir is not None else cfg.data.spider_dir,
        args.split if args.split is not None else cfg.data.eval_split,
        args.predictions,
        out,
        cfg.evaluate,
        exclude=args.exclude if args.exclude is not None else cfg.data.exclude,
        address=cfg.cluster.address,
        progress=not args.no_progress,
        log=lambda msg: print(msg, file=sys.stderr),
        validation=validation_carve(cfg.data),
    )
    print(format_summary(summary))
    print(f"wrote {out}/summary.json and {out}/records.jsonl")
    return 0
