"""`sqltrain data check|mini`: validate a Spider-layout dataset, or write the mini benchmark."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from sqltrain.spider.hardness import LEVELS


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="validate a Spider-layout dataset; write the mini benchmark")
    sub = p.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a dataset and print counts per split, dbs and hardness")
    c.add_argument("--spider-dir", required=True, help='Spider-layout directory, or "mini"')
    c.add_argument("--exclude", help="KNOWN_GAPS.tsv-format list of examples to leave out")
    c.add_argument("--skip-invalid", action="store_true", help="skip and count malformed records instead of failing")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=_check)
    m = sub.add_parser("mini", help="write the embedded mini benchmark (Spider layout) to DIR")
    m.add_argument("dir", help="destination directory: created, or replaced whole when it is empty or a mini "
                   "benchmark sqltrain wrote (any other directory is refused)")
    m.set_defaults(func=_mini)


def summarize_benchmark(bench, exclude=None) -> dict:
    """Counts per split, databases and hardness levels of a benchmark."""
    summary: dict = {"root": str(bench.root), "dbs_in_tables_json": len(bench.schemas),
                     "sqlite_files": len(bench.sqlite_files), "splits": {}}
    for split in bench.available_splits():
        examples = bench.examples(split, exclude=exclude, check_db=False)
        missing = Counter(e.db_id for e in examples if not bench.db_path(e.db_id).exists())
        bad = {db: p for db in sorted({e.db_id for e in examples} - set(missing))
               if (p := bench.db_problem(bench.db_path(db)))}
        levels = Counter(_level(e.query) for e in examples)
        summary["splits"][split] = {
            "examples": len(examples),
            "dbs": len({e.db_id for e in examples}),
            "hardness": {lvl: levels.get(lvl, 0) for lvl in (*LEVELS, "unknown") if lvl in LEVELS or levels[lvl]},
            "missing_database": dict(sorted(missing.items())),
            "bad_database": bad,
        }
    if bench.skipped:
        summary["skipped"] = dict(bench.skipped)
    return summary


def _level(query: str) -> str:
    """Spider hardness, or "unknown" for a gold query sqlglot cannot parse (Spider-DK-style data
    holds some; evaluate scores them the same way)."""
    from sqltrain.spider.hardness import hardness

    try:
        return hardness(query)
    except ValueError:
        return "unknown"


def _print_summary(s: dict) -> None:
    print(f"benchmark: {s['root']}")
    print(f"databases: {s['dbs_in_tables_json']} in tables.json, {s['sqlite_files']} sqlite files")
    for split, info in s["splits"].items():
        levels = " / ".join(f"{lvl} {n}" for lvl, n in info["hardness"].items())
        print(f"{split}: {info['examples']} examples on {info['dbs']} dbs; hardness {levels}")
        for db, n in info["missing_database"].items():
            print(f"  warning: {n} {split} examples use db '{db}', which has no .sqlite file")
        for db, problem in info["bad_database"].items():
            print(f"  warning: {split} examples use db '{db}', whose .sqlite file {problem}")
    for reason, n in s.get("skipped", {}).items():
        print(f"skipped (malformed): {n} x {reason}")


def _check(args: argparse.Namespace) -> int:
    from sqltrain.data import benchmark_root
    from sqltrain.spider.benchmark import SpiderBenchmark

    bench = SpiderBenchmark(benchmark_root(args.spider_dir), on_error="skip" if args.skip_invalid else "raise")
    summary = summarize_benchmark(bench, exclude=args.exclude)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0


def _mini(args: argparse.Namespace) -> int:
    from sqltrain.minibench.build import write_mini_benchmark

    path = write_mini_benchmark(args.dir)
    print(f"mini benchmark written to {path}")
    return 0
