"""Scores from per-example records: execution accuracy and exact-set match, overall and by hardness.

A prediction whose gold query fails counts as wrong (its record's ``error`` is ``gold_failed``):
it cannot be checked, and Spider's broken gold queries must stay visible.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqltrain.evaluate.records import EvalRecord, EvalSummary, Scores
from sqltrain.spider.hardness import LEVELS


def _rate(hits: int, n: int) -> float:
    return hits / n if n else 0.0


def scores(records: list[EvalRecord]) -> Scores:
    n = len(records)
    return Scores(n=n, ex=_rate(sum(r.correct for r in records), n),
                  exact_match=_rate(sum(r.exact_match for r in records), n))


def summarize_eval(records: Iterable[EvalRecord | Mapping[str, Any]], seconds: float, **context: Any) -> EvalSummary:
    """The summary of scored records (EvalRecords or their JSON objects): n, ex, exact_match,
    by_hardness (Spider's levels first, each present even when empty), errors, gold_errors,
    seconds, then `context` (split, missing, where the inputs came from)."""
    records = [EvalRecord.from_json(r) for r in records]
    by_level: dict[str, list[EvalRecord]] = {level: [] for level in LEVELS}
    for r in records:
        by_level.setdefault(r.hardness, []).append(r)
    total = scores(records)
    return EvalSummary(
        n=total.n, ex=total.ex, exact_match=total.exact_match,
        by_hardness={level: scores(rs) for level, rs in by_level.items()},
        errors=dict(sorted(Counter(r.error for r in records if r.error).items())),
        gold_errors=dict(sorted(Counter(r.gold_error for r in records if r.gold_error).items())),
        seconds=round(seconds, 3), **context,
    )


def format_summary(summary: EvalSummary) -> str:
    """A short human-readable table of a summary."""
    lines = [f"{'':8} {'n':>6} {'EX':>7} {'EM':>7}"]
    rows = [(level, s) for level, s in summary.by_hardness.items() if s.n] + [("all", summary)]
    for name, s in rows:
        lines.append(f"{name:8} {s.n:6d} {s.ex:7.3f} {s.exact_match or 0.0:7.3f}")
    if summary.errors:
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in summary.errors.items()))
    if summary.gold_errors:
        lines.append("gold errors: " + ", ".join(f"{k}={v}" for k, v in summary.gold_errors.items()))
    if summary.seconds is not None:
        lines.append(f"seconds: {summary.seconds:.2f}")
    return "\n".join(lines)
