"""Scores from per-example records: execution accuracy and exact-set match, overall and by hardness.

A record (one per scored prediction, written to records.jsonl) holds at least ``correct`` (bool:
execution match), ``exact_match`` (bool), ``hardness``, ``error`` and ``gold_error``. ``error``
says why a prediction is wrong: a sandbox error type of the prediction (syntax, runtime, timeout,
denied, too_large), ``wrong_result`` (it ran, the result differs) or ``gold_failed`` (the gold
query itself failed; ``gold_error`` holds its type). A prediction whose gold query fails counts as
wrong: it cannot be checked, and Spider's broken gold queries must stay visible.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from sqltrain.spider.hardness import LEVELS


def _rate(hits: int, n: int) -> float:
    return hits / n if n else 0.0


def scores(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    return {
        "n": n,
        "ex": _rate(sum(bool(r["correct"]) for r in records), n),
        "exact_match": _rate(sum(bool(r["exact_match"]) for r in records), n),
    }


def summarize(records: Iterable[dict[str, Any]], seconds: float, **extra: Any) -> dict[str, Any]:
    """The summary.json contents: n, ex, exact_match, by_hardness, errors, gold_errors, seconds."""
    records = list(records)
    by_level: dict[str, list[dict[str, Any]]] = {level: [] for level in LEVELS}
    for r in records:
        by_level.setdefault(r["hardness"], []).append(r)
    summary = scores(records)
    summary["by_hardness"] = {level: scores(rs) for level, rs in by_level.items()}
    summary["errors"] = dict(sorted(Counter(r["error"] for r in records if r["error"]).items()))
    summary["gold_errors"] = dict(sorted(Counter(r["gold_error"] for r in records if r["gold_error"]).items()))
    summary["seconds"] = round(seconds, 3)
    summary.update(extra)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A short human-readable table of a summary."""
    lines = [f"{'':8} {'n':>6} {'EX':>7} {'EM':>7}"]
    rows = [(level, s) for level, s in summary["by_hardness"].items() if s["n"]] + [("all", summary)]
    for name, s in rows:
        lines.append(f"{name:8} {s['n']:6d} {s['ex']:7.3f} {s['exact_match']:7.3f}")
    if summary["errors"]:
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in summary["errors"].items()))
    if summary["gold_errors"]:
        lines.append("gold errors: " + ", ".join(f"{k}={v}" for k, v in summary["gold_errors"].items()))
    lines.append(f"seconds: {summary['seconds']:.2f}")
    return "\n".join(lines)
