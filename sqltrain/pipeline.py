"""`sqltrain pipeline` and `sqltrain quickstart`: prepare -> train -> generate (base and
fine-tuned) -> evaluate -> compare -> report.

Each stage records the content hash of the config sections it depends on (declared in
sqltrain.stages) in ``{run_dir}/stages/<stage>.json`` once its outputs exist; a stage whose hash
and outputs match is skipped, so a crashed pipeline resumes where it stopped and an edited
config re-runs only the stages it affects.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqltrain.config import Config, ConfigError, load_config
from sqltrain.io import atomic_write_json
from sqltrain.stages import PIPELINE, depends_on, spec, stage_key, versions

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"

STAGE_NAMES = PIPELINE
"""The stages in order (declared in sqltrain.stages; --stages picks from these names)."""


@dataclass
class Stage:
    name: str
    outputs: list[Path]
    run: Callable[[], object]


def _marker(cfg: Config, name: str) -> Path:
    return Path(cfg.run_dir) / "stages" / f"{name}.json"


def run_stage(cfg: Config, stage: Stage, log=print) -> bool:
    """Run one stage unless its marker matches; returns True when it ran."""
    key = stage_key(cfg, stage.name)
    marker = _marker(cfg, stage.name)
    if marker.exists() and all(p.exists() for p in stage.outputs):
        if json.loads(marker.read_text()).get("hash") == key:
            log(f"[sqltrain] {stage.name}: up to date, skipped ({marker})")
            return False
    log(f"[sqltrain] {stage.name}: running")
    start = time.time()
    stage.run()
    missing = [str(p) for p in stage.outputs if not p.exists()]
    if missing:
        raise RuntimeError(f"stage {stage.name} finished without writing {missing}")
    atomic_write_json(marker, {"hash": key, "sections": list(depends_on(stage.name)), "versions": versions(stage.name),
                               "seconds": round(time.time() - start, 1), "outputs": [str(p) for p in stage.outputs]})
    log(f"[sqltrain] {stage.name}: done in {time.time() - start:.0f}s")
    return True


def _evaluate(cfg: Config, predictions: Path, out: Path, tag: str):
    """The evaluate stage into out/, then its summary logged to the tracking run."""
    from sqltrain.evaluate.runner import run_evaluate
    from sqltrain.tracking.log import log_evaluation

    summary = run_evaluate(cfg, predictions, out, split=cfg.data.eval_split)
    log_evaluation(cfg, tag, summary.to_json(), out / "summary.json")
    return summary


def _compare(cfg: Config):
    """The compare stage, then the comparison logged to the tracking run."""
    from sqltrain.report.paired import run_compare
    from sqltrain.tracking.log import log_compare

    result = run_compare(cfg)
    log_compare(cfg, result.comparison, result.out_dir)
    return result


def stage_runners(cfg: Config) -> dict[str, Callable[[], object]]:
    """What each pipeline stage calls: its stage's run_<stage>(cfg, ...) -> <Stage>Result,
    writing where the stage registry says."""
    from sqltrain.generate.pipeline import run_generate
    from sqltrain.prep.pipeline import run_prepare
    from sqltrain.report.report import run_report
    from sqltrain.train.driver import run_train

    run, split = Path(cfg.run_dir), cfg.data.eval_split
    out = {name: run / spec(name).outputs[0] for name in PIPELINE}
    adapter, evals = out["train"].parent, {tag: out[f"evaluate-{tag}"].parent for tag in ("base", "finetuned")}
    return {
        "prepare": lambda: run_prepare(cfg),
        "train": lambda: run_train(cfg),
        "generate-base": lambda: run_generate(cfg, adapter=None, split=split, out=out["generate-base"]),
        "generate-finetuned": lambda: run_generate(cfg, adapter=str(adapter), split=split, out=out["generate-finetuned"]),
        "evaluate-base": lambda: _evaluate(cfg, out["generate-base"], evals["base"], "base"),
        "evaluate-finetuned": lambda: _evaluate(cfg, out["generate-finetuned"], evals["finetuned"], "finetuned"),
        "compare": lambda: _compare(cfg),
        "report": lambda: run_report(cfg),
    }


def build_stages(cfg: Config) -> list[Stage]:
    """The pipeline's stages in order, each a call into one stage module."""
    runners = stage_runners(cfg)
    return [Stage(name, [Path(cfg.run_dir) / o for o in spec(name).outputs], runners[name]) for name in PIPELINE]


def run_pipeline(cfg: Config, only: list[str] | None = None, log=print) -> dict:
    """Run every stage (or only the named ones), skipping finished ones; returns the base and
    fine-tuned summaries that exist."""
    if only is not None:
        check_stages(only)
    stages = build_stages(cfg)
    for stage in stages:
        if only is None or stage.name in only:
            run_stage(cfg, stage, log)
    from sqltrain.evaluate.records import EvalSummary

    run = Path(cfg.run_dir)
    summaries = {tag: EvalSummary.read(p) for tag in ("base", "finetuned")
                 if (p := run / "eval" / tag / "summary.json").exists()}
    return {"summaries": summaries, "report": str(run / "report" / "report.md")}


def check_stages(names: list[str]) -> None:
    """ConfigError unless `names` is a non-empty list of known stage names (checked before any work)."""
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise ConfigError(f"--stages: unknown stage(s) {', '.join(repr(n) for n in unknown)}; "
                          f"stages: {','.join(STAGE_NAMES)}")


def parse_stages(text: str | None) -> list[str] | None:
    """--stages "a,b" -> ["a", "b"] (checked); None when the option is absent."""
    if text is None:
        return None
    names = [s.strip() for s in text.split(",")]
    check_stages(names)
    return names


def _print_result(cfg: Config, result: dict) -> None:
    labels = {"base": "base model", "finetuned": "fine-tuned"}
    for tag, s in result["summaries"].items():
        if tag == next(iter(result["summaries"])):
            print(f"\n{cfg.data.eval_split} execution accuracy (EX) on {s.n} examples:")
        print(f"  {labels[tag]} : {100 * s.ex:5.1f}%   exact match {100 * (s.exact_match or 0.0):5.1f}%")
    if Path(result["report"]).exists():
        print(f"report: {result['report']}")
    _warn_if_worse(result["summaries"], cfg.run_dir)


def _warn_if_worse(summaries: dict, run_dir: str) -> None:
    """The last line says loudly when fine-tuning made the model worse than its base."""
    if {"base", "finetuned"} <= set(summaries) and summaries["finetuned"]["ex"] < summaries["base"]["ex"]:
        b, f = summaries["base"]["ex"], summaries["finetuned"]["ex"]
        print(f"WARNING: the fine-tuned model is WORSE than its base: EX {100 * b:.1f}% -> {100 * f:.1f}% "
              f"({100 * (f - b):+.1f} points); check {run_dir}/train/metrics.jsonl and {run_dir}/compare/compare.md",
              file=sys.stderr)


def _pipeline(args: argparse.Namespace) -> int:
    only = parse_stages(args.stages)
    cfg = load_config(args.config, args.overrides)
    _print_result(cfg, run_pipeline(cfg, only))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    cfg = load_config(REPO_CONFIGS / "quickstart.yaml", args.overrides)
    print(f"[sqltrain] quickstart: mini benchmark, {cfg.model.name}, {cfg.train.num_workers} Ray workers, "
          f"DeepSpeed ZeRO-{cfg.deepspeed.stage}, CPU; outputs under {cfg.run_dir}")
    _print_result(cfg, run_pipeline(cfg))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("pipeline", help="prepare -> train -> generate -> evaluate -> compare -> report (resumable)")
    p.add_argument("--config", required=True, help="experiment YAML")
    p.add_argument("--stages", help=f"comma-separated subset of stages to run ({', '.join(STAGE_NAMES)})")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.set_defaults(func=_pipeline)
    q = subparsers.add_parser("quickstart", help="the whole pipeline on the mini benchmark with SmolLM2-135M on CPU")
    q.add_argument("overrides", nargs="*", help="key.sub=value overrides of configs/quickstart.yaml")
    q.set_defaults(func=_quickstart)


if __name__ == "__main__":
    sys.exit(__import__("sqltrain.cli").cli.main(["pipeline", *sys.argv[1:]]))
