"""`sqltrain generate --config C [--adapter DIR] [--split dev] [--out FILE] [key=value ...]`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="generate SQL for a split with the base model or base + adapter (Ray Data actors)"
    )
    p.add_argument("--config", required=True, help="experiment YAML")
    p.add_argument("--adapter", help="adapter dir from `sqltrain train` (its config and prompt are used); "
                                     "omit for the base model")
    p.add_argument("--split", help="split to generate for (default: data.eval_split); validation = the train "
                                   "databases data.validation holds out")
    p.add_argument("--out", help="predictions file (default: {run_dir}/predictions/{base|finetuned}.jsonl)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides (also adapter=DIR and split=NAME)")
    p.set_defaults(func=_generate)


def split_overrides(args: argparse.Namespace) -> tuple[list[str], str | None, str | None]:
    """Config overrides, with the `adapter=` and `split=` shorthands taken out (flags win)."""
    adapter, split, rest = args.adapter, args.split, []
    for ov in args.overrides:
        key, _, value = ov.partition("=")
        if key == "adapter":
            adapter = adapter or value
        elif key == "split":
            split = split or value
        else:
            rest.append(ov)
    return rest, adapter, split


def _generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sqltrain.config import load_config
    from sqltrain.generate.pipeline import run_generate

    overrides, adapter, split = split_overrides(args)
    cfg = load_config(args.config, overrides)
    result = run_generate(cfg, adapter=adapter, split=split, out=Path(args.out) if args.out else None)
    print(f"predictions: {result.predictions}")
    return 0
