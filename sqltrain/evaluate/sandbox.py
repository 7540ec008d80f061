"""Run one untrusted SQL string on one SQLite database, safely.

Predicted SQL is hostile until proven otherwise. Layers, each enough on its own for what it guards:

* The file is opened through a ``file:...?mode=ro&immutable=1`` URI: SQLite cannot write it, takes
  no locks and never creates a journal beside it.
* SQLite's own limits are lowered before any user SQL runs (``setlimit``): no ATTACH slots at all,
  short statements, shallow expressions, bounded strings/blobs. ``PRAGMA hard_heap_limit`` caps
  SQLite's memory and ``temp_store=MEMORY`` keeps sorts under that cap instead of on disk.
* An authorizer allows only reading: SELECT, reads of the ``main`` schema, recursive CTEs and an
  allow-list of pure functions. Everything else (writes, DDL, PRAGMA and pragma table-valued
  functions, ATTACH — which VACUUM INTO uses internally — transactions, ``load_extension``,
  ``fts3_tokenizer``) is denied.
* A progress handler checks the wall clock every 100 VM steps and interrupts the running statement
  at its deadline (the deadline covers fetching rows too, since rows are produced lazily). No
  interrupt can stop a single VM instruction, so the length limit bounds what one can cost.
* Fetching stops after ``max_rows`` rows or ``MAX_RESULT_BYTES`` of fetched values, numbers
  included (``too_large``).
* Exactly one statement: ``sqlite3.Cursor.execute`` refuses a second one before running the first.

Two things no in-process check can stop: a single VM instruction (``printf('%.*c', 2147483647,
'x')`` is one 9-second step) and compiling a statement (chained self-joined CTEs compile for
seconds into a gigabyte). The evaluator therefore runs this class inside a child process that
is killed at its deadline and capped in memory: sqltrain.evaluate.isolated.

Every failure is an ``ExecResult`` with a typed error, never an exception.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

ERROR_TYPES = ("syntax", "runtime", "timeout", "denied", "too_large")
"""syntax: the statement does not compile (parse errors, unknown tables/columns/functions, bad
text such as NUL bytes or invalid UTF-8, empty SQL); runtime: it compiled but failed while
running; timeout: interrupted at its deadline (or, in sqltrain.evaluate.isolated, its process killed
at the hard deadline); denied: the authorizer or the one-statement rule refused it; too_large: a
row, byte, memory or SQLite size limit was hit."""

# SQLite-level limits: sized for text-to-SQL (Spider's longest gold query is 588 bytes) with wide
# margins. They are safety rails, not tuning knobs.
SQLITE_LIMITS = {
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,  # also stops VACUUM INTO, which attaches its target
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 2**14,  # bytes of SQL text (SQLite also applies LENGTH to it)
    # Bytes in one string, blob or row (Spider's largest value: 213). It also bounds the work of one
    # VM instruction, which no interrupt can stop: instr(), replace() and trim() are quadratic;
    # instr() on two 1 MiB strings runs 15 s, on 64 KiB ones up to 0.2 s, on 16 KiB ones ~3 ms.
    sqlite3.SQLITE_LIMIT_LENGTH: 2**14,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1000,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 200,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 100,
    # Result columns (and columns of a table): Spider's widest table has 48. A thousand numeric
    # columns per row were a way around the byte cap before numbers were counted too.
    sqlite3.SQLITE_LIMIT_COLUMN: 500,
    sqlite3.SQLITE_LIMIT_VDBE_OP: 250_000,  # opcodes in one compiled statement
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}
MAX_SQL_CHARS = SQLITE_LIMITS[sqlite3.SQLITE_LIMIT_SQL_LENGTH]
"""Longest SQL text the sandbox accepts (longer is too_large before SQLite sees it)."""
HEAP_LIMIT_BYTES = 2**29
"""SQLite's hard heap limit (process-wide: SQLite has one allocator per process). Half of the
isolated child's address-space cap (sqltrain.evaluate.isolated.CHILD_MEMORY_BYTES), so SQLite
reports its own out-of-memory before the process runs out."""
MAX_RESULT_BYTES = 128 * 2**20
"""Estimated Python memory of the rows fetched per query (values of every type, row tuples
included) before ``too_large``."""
PROGRESS_STEPS = 100
"""VM instructions between wall-clock checks: about one check per 10 rows of a scan; costs ~5% on
join-heavy queries, and keeps the overshoot of a runaway to a few expensive rows."""
FETCH_BATCH = 256
"""Rows per fetch between size checks: with rows capped at SQLITE_LIMIT_LENGTH, one batch holds
at most 4 MiB before the byte cap is checked."""

# Pure functions a query may call: core scalars, aggregates, window functions, date/time, math
# and JSON. Left out on purpose: load_extension, fts3_tokenizer (leaks pointers, can install code),
# sqlite_log, the FTS/R-tree internals and the sqlite_* introspection functions.
ALLOWED_FUNCTIONS = frozenset("""
abs char coalesce format glob hex ifnull iif instr length like likelihood likely lower ltrim max
min nullif printf quote random randomblob replace round rtrim sign soundex substr substring trim
typeof unicode unlikely upper zeroblob
avg count group_concat string_agg sum total
row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
date time datetime julianday strftime unixepoch current_date current_time current_timestamp
acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10 log2
mod pi pow power radians sin sinh sqrt tan tanh trunc
json json_array json_array_length json_extract json_insert json_object json_patch json_quote
json_remove json_replace json_set json_type json_valid json_group_array json_group_object -> ->>
""".split())

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE}
_TOO_LARGE_HINTS = ("too big", "too large", "too long", "too many", "at most", "stack overflow", "string or blob")


@dataclass(frozen=True)
class ExecResult:
    rows: list[tuple] | None
    """Result rows, or None when the query failed."""
    error: str | None = None
    """One of ERROR_TYPES, or None on success."""
    message: str = ""
    seconds: float = 0.0
    columns: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.error is None


def _decode_text(data: bytes) -> str:
    # Databases may hold non-UTF-8 text and a query can CAST any blob to TEXT; decoding must
    # not fail the query. Gold and prediction go through the same decoder.
    return data.decode("utf-8", errors="replace")


def open_readonly(db_path: str | Path) -> sqlite3.Connection:
    """Open a database file read-only and immutable (no locks, no journal, no writes)."""
    path = Path(db_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"database file not found: {path}")
    conn = sqlite3.connect(path.as_uri() + "?mode=ro&immutable=1", uri=True, check_same_thread=False)
    conn.text_factory = _decode_text
    return conn


class Sandbox:
    """One read-only, authorizer-guarded connection to one database; runs one query at a time.

    Reusing a Sandbox for many queries on the same database saves reopening and re-reading the
    schema each time. Not thread-safe: use one per thread/process.
    """

    def __init__(self, db_path: str | Path, *, timeout_s: float, max_rows: int):
        self.db_path = Path(db_path)
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self._conn = open_readonly(db_path)
        self._deadline = float("inf")
        self._timed_out = False
        self._denied: str | None = None
        self._started = False
        self._configure(self._conn)

    def _configure(self, conn: sqlite3.Connection) -> None:
        for limit, value in SQLITE_LIMITS.items():
            conn.setlimit(limit, value)
        # Both PRAGMAs run before the authorizer exists; users can never issue one.
        conn.execute(f"PRAGMA hard_heap_limit = {HEAP_LIMIT_BYTES}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.set_authorizer(self._authorize)
        conn.set_progress_handler(self._progress, PROGRESS_STEPS)
        # The trace callback fires when a compiled statement starts running: it separates
        # compile errors ("syntax") from errors while running ("runtime").
        conn.set_trace_callback(self._on_start)

    def _authorize(self, action: int, arg1, arg2, db_name, _trigger) -> int:
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and db_name in ("main", None):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in ALLOWED_FUNCTIONS:
            return sqlite3.SQLITE_OK
        if self._denied is None:
            what = arg2 if action == sqlite3.SQLITE_FUNCTION else (arg1 or "")
            self._denied = f"not allowed: {_ACTION_NAMES.get(action, action)} {what}".rstrip()
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        if time.monotonic() > self._deadline:
            self._timed_out = True
            return 1  # non-zero interrupts the running statement
        return 0

    def _on_start(self, _sql: str) -> None:
        self._started = True

    def execute(self, sql: str | bytes) -> ExecResult:
        """Run one SQL statement and return its rows or a typed error (never raises)."""
        start = time.monotonic()
        self._deadline = start + self.timeout_s
        self._timed_out, self._denied, self._started = False, None, False
        try:
            text = _check_text(sql)
            rows, columns = self._run(text)
            return ExecResult(rows, None, "", time.monotonic() - start, columns)
        except _Refused as e:
            return ExecResult(None, e.kind, str(e), time.monotonic() - start)
        except MemoryError:  # SQLITE_NOMEM: the hard heap limit was reached
            return ExecResult(None, "too_large", "out of memory (SQLite heap limit or process cap)", time.monotonic() - start)
        except (sqlite3.Error, ValueError, OverflowError) as e:
            kind = self._classify(e)
            message = f"{e} ({self._denied})" if kind == "denied" and self._denied else str(e)
            return ExecResult(None, kind, message, time.monotonic() - start)
        finally:
            self._deadline = float("inf")

    def _run(self, text: str) -> tuple[list[tuple], tuple[str, ...]]:
        cur = self._conn.cursor()
        try:
            cur.execute(text)
            if cur.description is None:  # compiled and passed the authorizer, yet returns no rows
                raise _Refused("denied", "not a query")
            columns = tuple(d[0] for d in cur.description)
            return self._fetch(cur), columns
        finally:
            cur.close()

    def _fetch(self, cur: sqlite3.Cursor) -> list[tuple]:
        rows: list[tuple] = []
        n_bytes = 0
        while batch := cur.fetchmany(FETCH_BATCH):
            rows.extend(batch)
            if len(rows) > self.max_rows:
                raise _Refused("too_large", f"more than {self.max_rows} rows")
            n_bytes += sum(map(_row_bytes, batch))
            if n_bytes > MAX_RESULT_BYTES:
                raise _Refused("too_large", f"result rows take more than {MAX_RESULT_BYTES // 2**20} MiB")
        return rows

    def _classify(self, err: Exception) -> str:
        if self._timed_out:
            return "timeout"
        if self._denied is not None:
            return "denied"
        msg = str(err).lower()
        if isinstance(err, sqlite3.ProgrammingError) and "one statement at a time" in msg:
            return "denied"
        if getattr(err, "sqlite_errorname", "") == "SQLITE_TOOBIG" or any(h in msg for h in _TOO_LARGE_HINTS):
            return "too_large"
        if isinstance(err, (ValueError, sqlite3.ProgrammingError, sqlite3.Warning)):
            return "syntax"  # NUL characters, wrong binding counts: the text itself is malformed
        return "runtime" if self._started else "syntax"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _row_bytes(row: tuple) -> int:
    """Rough Python memory of one fetched row: the tuple, one object per value, text/blob bytes."""
    return 56 + 40 * len(row) + sum(len(v) for v in row if isinstance(v, (str, bytes)))


class _Refused(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _check_text(sql: str | bytes) -> str:
    if isinstance(sql, bytes):
        try:
            sql = sql.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _Refused("syntax", f"SQL is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not isinstance(sql, str):
        raise _Refused("syntax", f"SQL must be text, got {type(sql).__name__}")
    if "\x00" in sql:
        raise _Refused("syntax", "SQL contains a NUL character")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates, e.g. from undecodable input bytes
        raise _Refused("syntax", f"SQL is not valid UTF-8 ({e.reason} at position {e.start})") from None
    if len(sql) > MAX_SQL_CHARS:
        raise _Refused("too_large", f"SQL longer than {MAX_SQL_CHARS} characters")
    if not _has_code(sql):
        raise _Refused("syntax", "empty SQL")
    return sql


def _has_code(sql: str) -> bool:
    """True when the text holds something besides whitespace, ';' and comments."""
    i, n = 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif sql[i].isspace() or sql[i] == ";":
            i += 1
        else:
            return True
    return False


def execute_sql(db_path: str | Path, sql: str | bytes, *, timeout_s: float, max_rows: int) -> ExecResult:
    """One-shot convenience: open a sandbox on `db_path`, run `sql`, close."""
    with Sandbox(db_path, timeout_s=timeout_s, max_rows=max_rows) as box:
        return box.execute(sql)


# Authorizer action codes by name, for denial messages (sqlite3 reuses the numbers for error codes).
_ACTION_NAMES = {getattr(sqlite3, f"SQLITE_{n}"): n for n in """
CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER CREATE_TEMP_VIEW
CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX DROP_TEMP_TABLE
DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW INSERT PRAGMA READ SELECT TRANSACTION UPDATE
ATTACH DETACH ALTER_TABLE REINDEX ANALYZE CREATE_VTABLE DROP_VTABLE FUNCTION SAVEPOINT RECURSIVE
""".split()}
