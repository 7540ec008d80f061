"""`sqltrain` command line: one verb per stage; each verb lives in its stage's command module.

This file only assembles the parser. Command modules import heavy libraries (torch, ray) inside
their handlers so that `sqltrain --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module's register(subparsers) adds its verbs (compare and report share one module,
# pipeline and quickstart another).
COMMAND_MODULES = (
    "sqltrain.spider.command", "sqltrain.prep.command", "sqltrain.train.command", "sqltrain.tune.command",
    "sqltrain.generate.command", "sqltrain.evaluate.command", "sqltrain.report.command", "sqltrain.pipeline",
    "sqltrain.export.command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sqltrain",
        description="Fine-tune open LLMs to write SQL (QLoRA on Ray) and score them by executing the SQL.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sqltrain.config import ConfigError
    from sqltrain.evaluate.predictions import PredictionsError
    from sqltrain.export.source import ExportError
    from sqltrain.io import OutputError
    from sqltrain.model.loading import ModelSourceError
    from sqltrain.raycluster import RayConnectError
    from sqltrain.spider.benchmark import SpiderFormatError
    from sqltrain.train.checkpoints import DivergedAdapterError
    from sqltrain.train.data import ShardError
    from sqltrain.train.driver import TrainingDiverged

    # Input errors of any stage (bad config, malformed dataset or predictions, missing or stale
    # shards, an output path holding someone else's files, an unreachable Ray address, a model
    # source that does not exist, an adapter of a diverged run) are one line and exit code 2; a
    # diverged training run is one line and exit code 1; anything else is a bug and keeps its traceback.
    try:
        return int(args.func(args) or 0)
    except (ConfigError, SpiderFormatError, PredictionsError, ShardError, OutputError, RayConnectError,
            ModelSourceError, DivergedAdapterError, ExportError) as e:
        print(f"sqltrain {args.verb}: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"sqltrain {args.verb}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
