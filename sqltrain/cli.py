"""`sqltrain` command line: one verb per stage; each verb lives in its stage's command module.

This file only assembles the parser. Command modules import heavy libraries (torch, ray) inside
their handlers so that `sqltrain --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module that registers it, one-line help used while the module is absent)
VERBS = {
    "data": ("sqltrain.spider.command", "validate a Spider-layout dataset; write the mini benchmark"),
    "prepare": ("sqltrain.prep.command", "schema-link, render and tokenize a benchmark into Parquet shards"),
    "train": ("sqltrain.train.command", "QLoRA fine-tuning with Ray Train + DeepSpeed"),
    "tune": ("sqltrain.tune.command", "hyperparameter search with Ray Tune"),
    "generate": ("sqltrain.generate.command", "batched SQL generation on Ray actors"),
    "evaluate": ("sqltrain.evaluate.command", "sandboxed execution accuracy of predicted SQL"),
    "compare": ("sqltrain.report.command", "compare two evaluations (e.g. base vs fine-tuned)"),
    "report": ("sqltrain.report.command", "write report.md + plots for a run dir"),
    "pipeline": ("sqltrain.pipeline", "prepare -> train -> generate -> evaluate -> compare -> report"),
    "quickstart": ("sqltrain.pipeline", "the whole pipeline on the mini benchmark with SmolLM2-135M on CPU"),
}


def _not_available(verb: str):
    def handler(args: argparse.Namespace) -> int:
        print(f"sqltrain {verb}: not yet available in this version", file=sys.stderr)
        return 2

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sqltrain",
        description="Fine-tune open LLMs to write SQL (QLoRA on Ray) and score them by executing the SQL.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    registered: set[str] = set()
    for verb, (module_name, help_text) in VERBS.items():
        if verb in registered:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is None or not module_name.startswith(e.name):
                raise
            module = None
        if module is not None:
            before = set(sub.choices)
            module.register(sub)
            registered |= set(sub.choices) - before
        if verb not in sub.choices:
            p = sub.add_parser(verb, help=f"{help_text} (not yet available)")
            p.set_defaults(func=_not_available(verb))
            registered.add(verb)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sqltrain.config import ConfigError
    from sqltrain.spider.benchmark import SpiderFormatError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, SpiderFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
