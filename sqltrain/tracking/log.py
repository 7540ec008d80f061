"""What the pipeline's stages log to the tracking run after writing their own files.

Each function opens the tracker, logs, closes it; with tracking.backend=none it does nothing.
Evaluation results are logged at step 0 (one value per run; the training curve has the steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqltrain.config import Config
from sqltrain.tracking.backends import flatten, tracker

EVAL_KEYS = ("n", "ex", "exact_match", "by_hardness", "errors", "missing")
COMPARE_KEYS = ("n", "overall", "by_hardness", "fixed", "broken", "both_correct", "both_wrong", "mcnemar_p")


def log_evaluation(cfg: Config, tag: str, summary: dict[str, Any], summary_path: str | Path) -> None:
    """One evaluation (summary.json of `sqltrain evaluate`) as eval/<tag>/...: EX and exact
    match overall and by hardness, error counts; the summary file itself as an artifact."""
    if cfg.tracking.backend == "none":
        return
    with tracker(cfg) as t:
        t.log_metrics(flatten({k: summary[k] for k in EVAL_KEYS if k in summary}, f"eval/{tag}"), step=0)
        t.log_file(summary_path, f"eval/{tag}")


def log_compare(cfg: Config, result: dict[str, Any], out_dir: str | Path) -> None:
    """The base-vs-fine-tuned comparison (compare.json) as compare/...: both sides' EX and the
    deltas overall and by hardness, fixed/broken counts, McNemar p; compare.md as text."""
    if cfg.tracking.backend == "none":
        return
    out = Path(out_dir)
    with tracker(cfg) as t:
        t.log_metrics(flatten({k: result[k] for k in COMPARE_KEYS}, "compare"), step=0)
        t.log_text("compare", (out / "compare.md").read_text())
        t.log_file(out / "compare.json", "compare")


def log_tune(cfg: Config, summary: dict[str, Any], results_path: str | Path) -> None:
    """`sqltrain tune`'s outcome: tune/best/<metric> and a markdown table of every trial (each
    trial's training curve is already under tune/<trial_id>/); results.json as an artifact."""
    if cfg.tracking.backend == "none":
        return
    metric, best = summary["metric"], summary["best"]
    lines = [f"| trial | {metric} | step | status | values |", "|---|---:|---:|---|---|"]
    for tr in summary["trials"]:
        values = ", ".join(f"{k}={v}" for k, v in tr["config"].items())
        lines.append(f"| {tr['trial_id']} | {tr['metric']} | {tr['step']} | {tr['status']} | {values} |")
    with tracker(cfg) as t:
        if best is not None:
            t.log_metrics({f"tune/best/{metric}": float(best["metric"])}, step=int(best["step"] or 0))
        t.log_text("tune", "\n".join(lines) + "\n")
        t.log_file(results_path, "tune")
