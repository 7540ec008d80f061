"""The evaluation's records, typed: one `EvalRecord` per scored prediction (a line of
records.jsonl) and one `EvalSummary` per evaluation (summary.json). The runner writes them,
metrics computes the summary, the paired comparison and the report read them.

Both serialise to the JSON sqltrain has always written (fields in the same order); evaluation
dirs written by earlier versions, such as the committed docs/results/, read back unchanged.
"""

from __future__ import annotations

from pathlib import Path

from sqltrain.io import read_jsonl
from sqltrain.typed_json import JsonRecord, RecordError


class EvalRecord(JsonRecord):
    """One prediction scored against its gold query on every database variant."""

    index: int | None = None
    """The example's position in its split (what the paired comparison matches on)."""
    id: str | None = None
    db_id: str | None = None
    hardness: str = "unknown"
    """Spider hardness of the gold query (easy/medium/hard/extra), unknown when it does not parse."""
    question: str | None = None
    gold: str | None = None
    pred: str | None = None
    correct: bool
    """Execution match on every variant (test-suite semantics)."""
    error: str | None = None
    """Why it is wrong: a sandbox error type of the prediction (syntax, runtime, timeout, denied,
    too_large), wrong_result, or gold_failed (gold_error holds the gold query's error type)."""
    message: str = ""
    gold_error: str | None = None
    gold_rows: int | None = None
    pred_rows: int | None = None
    variants: int | None = None
    """Database variants it was executed on."""
    executions: int | None = None
    """Sandbox executions it cost (a gold query shared by several items counts once)."""
    exact_match: bool


class Scores(JsonRecord):
    n: int
    ex: float
    """Execution accuracy: share of records with correct = true (0.0 when n = 0)."""
    exact_match: float


class EvalSummary(JsonRecord):
    """summary.json: the scores and where they came from."""

    n: int
    ex: float
    exact_match: float | None = None
    by_hardness: dict[str, Scores] = {}
    errors: dict[str, int] = {}
    """Records per error type."""
    gold_errors: dict[str, int] = {}
    seconds: float | None = None
    split: str | None = None
    missing: int = 0
    """Examples of the split (outside the exclusions) that had no prediction."""
    predictions: str | None = None
    spider_dir: str | None = None
    exclude: str | None = None
    timeout_s: float | None = None
    records_sha256: str | None = None
    """sha256 of records.jsonl written beside it (a summary never sits beside other records)."""


def read_records(path: str | Path) -> list[EvalRecord]:
    """records.jsonl as EvalRecords; RecordError names the line and field of a bad one."""
    import json

    try:
        rows = read_jsonl(path)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: malformed JSON line: {e}") from None
    return [EvalRecord.from_json(row, f"{path}: record {i}") for i, row in enumerate(rows)]
