"""Read predicted SQL: JSONL from `sqltrain generate`, or the official one-query-per-line text.

JSONL: one object per line with at least ``index`` (position in the split) and ``sql``.
Text (as Spider's ``dev_gold.sql`` / the official evaluator's prediction files): line i holds the
SQL for example i, optionally followed by a TAB and the db_id. An empty line is an empty
prediction (it keeps the following lines aligned), and a final newline does not add one.

Bytes that are not UTF-8 are kept as lone surrogates rather than failing the whole file; the
sandbox turns such a query into a typed ``syntax`` error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


class PredictionsError(ValueError):
    """The predictions file is malformed; the message names the file, line and field."""


@dataclass(frozen=True)
class Prediction:
    index: int
    sql: str
    db_id: str | None = None
    """db_id given by the file (checked against the benchmark when present)."""
    line: int = 0
    """1-based line in the file, for error messages."""


def read_predictions(path: str | os.PathLike, fmt: str = "auto") -> list[Prediction]:
    """Read a predictions file; fmt is "jsonl", "text" or "auto" (by suffix, else by content)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PredictionsError(f"{path}: predictions file not found") from None
    text = raw.decode("utf-8", errors="surrogateescape")
    if fmt == "auto":
        fmt = _detect_format(path, text)
    if fmt == "jsonl":
        return _read_jsonl(path, text)
    if fmt == "text":
        return _read_text(text)
    raise ValueError(f"unknown predictions format {fmt!r}; expected jsonl, text or auto")


def _detect_format(path: Path, text: str) -> str:
    if path.suffix in (".jsonl", ".json"):
        return "jsonl"
    if path.suffix in (".sql", ".txt"):
        return "text"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return "jsonl" if first.startswith("{") else "text"


def _read_jsonl(path: Path, text: str) -> list[Prediction]:
    out: list[Prediction] = []
    seen: dict[int, int] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise PredictionsError(f"{path}: line {lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise PredictionsError(f"{path}: line {lineno}: expected a JSON object")
        index, sql = rec.get("index"), rec.get("sql")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise PredictionsError(
                f"{path}: line {lineno}: field 'index' must be a non-negative integer, got {index!r}"
            )
        if not isinstance(sql, str):
            raise PredictionsError(f"{path}: line {lineno}: field 'sql' must be a string, got {type(sql).__name__}")
        if index in seen:
            raise PredictionsError(f"{path}: line {lineno}: index {index} already given on line {seen[index]}")
        seen[index] = lineno
        db_id = rec.get("db_id")
        out.append(Prediction(index, sql, db_id if isinstance(db_id, str) else None, lineno))
    return out


def _read_text(text: str) -> list[Prediction]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line
    out = []
    for i, line in enumerate(lines):
        sql, _, db_id = line.rstrip("\r").partition("\t")
        out.append(Prediction(i, sql.strip(), db_id.strip() or None, i + 1))
    return out
