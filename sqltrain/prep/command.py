"""`sqltrain prepare --config CONFIG [key.sub=value ...]`: the prepare stage's CLI verb."""

from __future__ import annotations

import argparse


def _prepare(args: argparse.Namespace) -> int:
    from sqltrain.config import load_config
    from sqltrain.prep.pipeline import run_prepare

    cfg = load_config(args.config, args.overrides)
    result = run_prepare(cfg, force=args.force)
    print(f"prepared data: {result.data_dir} (manifest: {result.manifest})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="schema-link, render and tokenize a benchmark into Parquet shards",
        description="Link each question to its schema, render the chat prompt, tokenize it with the SQL target "
        "(labels masked on the prompt) and write {run_dir}/data: Parquet shards per split, Alpaca JSONL and "
        "manifest.json. Runs on Ray Data; reuses the output when config and inputs are unchanged.",
    )
    p.add_argument("--config", required=True, help="experiment YAML (see configs/)")
    p.add_argument("--force", action="store_true", help="rebuild even when the existing output is up to date")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. linking.format=compact")
    p.set_defaults(func=_prepare)
