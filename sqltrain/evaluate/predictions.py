"""Read predicted SQL: JSONL from `sqltrain generate`, or the official one-query-per-line text.

JSONL: one object per line with at least ``index`` (position in the split) and ``sql``.
Text (as Spider's ``dev_gold.sql`` / the official evaluator's prediction files): line i holds the
SQL for example i, optionally followed by a TAB and the db_id. An empty line is an empty
prediction (it keeps the following lines aligned), and a final newline does not add one.

The format is decided by content, not by the file name: a SQL line never starts with ``{``, so
a file whose lines all start with ``{`` is JSONL whatever its suffix, and a file mixing both is
refused (it is neither). A UTF-8 byte-order mark is dropped; CR-only line ends (old Mac files)
count as line ends. Only regular files are read: a FIFO or device would block or never end.

Bytes that are not UTF-8 are kept as lone surrogates rather than failing the whole file; the
sandbox turns such a query into a typed ``syntax`` error.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_SHOWN = 60
"""Characters of file content quoted in an error message (errors stay one short line)."""


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


def shown(value: object) -> str:
    """repr of a value from the file, cut to MAX_SHOWN characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def read_predictions(path: str | os.PathLike, fmt: str = "auto") -> list[Prediction]:
    """Read a predictions file; fmt is "jsonl", "text" or "auto" (by content)."""
    if not str(path).strip():
        raise PredictionsError("predictions path is empty: give a JSONL or text file")
    path = Path(path)
    text = _read_regular_file(path).decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    if "\n" not in text:
        text = text.replace("\r", "\n")  # CR-only line ends
    if fmt == "auto":
        fmt = _detect_format(path, text)
    if fmt == "jsonl":
        preds = _read_jsonl(path, text)
    elif fmt == "text":
        preds = _read_text(text)
    else:
        raise ValueError(f"unknown predictions format {fmt!r}; expected jsonl, text or auto")
    if not preds:
        raise PredictionsError(f"{path}: holds no predictions")
    return preds


def _read_regular_file(path: Path) -> bytes:
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise PredictionsError(f"{path}: is a directory; give the predictions file inside it")
        if not stat.S_ISREG(st.st_mode):
            raise PredictionsError(f"{path}: not a regular file (a FIFO, socket or device); "
                                   "write the predictions to a file first")
        if st.st_size == 0:
            raise PredictionsError(f"{path}: is empty (0 bytes), no predictions")
        return path.read_bytes()
    except FileNotFoundError:
        raise PredictionsError(f"{path}: predictions file not found") from None
    except OSError as e:  # permission denied, a symlink loop, ...
        raise PredictionsError(f"{path}: cannot read it ({e.strerror or e})") from None


def _detect_format(path: Path, text: str) -> str:
    lines = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    json_lines = [n for n, line in lines if line.startswith("{")]
    text_lines = [n for n, line in lines if not line.startswith("{")]
    if json_lines and text_lines:
        raise PredictionsError(
            f"{path}: line {json_lines[0]} is a JSON object but line {text_lines[0]} is not; give JSONL "
            "({\"index\": i, \"sql\": ...} per line) or one SQL per line, not a mix"
        )
    # Named .jsonl but holding no object: read as JSONL, so the error names the first bad line.
    return "jsonl" if json_lines or path.suffix in (".jsonl", ".json") else "text"


def _read_jsonl(path: Path, text: str) -> list[Prediction]:
    out: list[Prediction] = []
    seen: dict[int, int] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        rec = _json_object(path, lineno, line)
        index, sql = rec.get("index"), rec.get("sql")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise PredictionsError(
                f"{path}: line {lineno}: field 'index' must be a non-negative integer, got {shown(index)}"
            )
        if not isinstance(sql, str):
            raise PredictionsError(f"{path}: line {lineno}: field 'sql' must be a string, got {type(sql).__name__}")
        if index in seen:
            raise PredictionsError(f"{path}: line {lineno}: index {index} already given on line {seen[index]}")
        seen[index] = lineno
        db_id = rec.get("db_id")
        out.append(Prediction(index, sql, db_id if isinstance(db_id, str) else None, lineno))
    return out


def _json_object(path: Path, lineno: int, line: str) -> dict:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise PredictionsError(f"{path}: line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise PredictionsError(f"{path}: line {lineno}: JSON nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise PredictionsError(f"{path}: line {lineno}: unreadable JSON value ({shown(str(e))})") from None
    if not isinstance(rec, dict):
        raise PredictionsError(f"{path}: line {lineno}: expected a JSON object")
    return rec


def _read_text(text: str) -> list[Prediction]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line
    out = []
    for i, line in enumerate(lines):
        sql, _, db_id = line.rstrip("\r").partition("\t")
        out.append(Prediction(i, sql.strip(), db_id.strip() or None, i + 1))
    return out
