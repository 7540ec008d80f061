"""`sqltrain compare A B --out DIR` and `sqltrain report RUN_DIR`."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    c = subparsers.add_parser(
        "compare", help="compare two evaluations of one split (e.g. base vs fine-tuned), example by example"
    )
    c.add_argument("eval_a", help="evaluation dir A, the 'before' (summary.json + records.jsonl)")
    c.add_argument("eval_b", help="evaluation dir B, the 'after'")
    c.add_argument("--out", required=True, help="directory for compare.json and compare.md")
    c.add_argument("--labels", nargs=2, metavar=("A", "B"), help="names shown for A and B (default: dir names)")
    c.add_argument("--sample", type=int, default=5, help="fixed and broken examples shown of each (default 5)")
    c.set_defaults(func=_compare)
    r = subparsers.add_parser("report", help="write report.md + plots for a run dir (from whatever stages exist)")
    r.add_argument("run_dir", help="the run directory (config run_dir)")
    r.set_defaults(func=_report)


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sqltrain.report.paired import CompareError, compare_markdown, regression_line, write_compare

    try:
        result = write_compare(args.eval_a, args.eval_b, args.out, labels=args.labels, sample=args.sample)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(compare_markdown(result))
    print(f"written: {Path(args.out) / 'compare.json'} and compare.md")
    if warning := regression_line(result):
        print(warning, file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from sqltrain.report.report import write_report

    try:
        path = write_report(args.run_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
