"""Per-database facts read from the SQLite file: declared types, sample values, text values.

Built once per database and cached on disk (JSON) under ``linking.cache_dir``, keyed by the
database file's sha256 and the settings that shape the index, so a changed file or setting
rebuilds it and nothing else does. Memory is bounded: at most ``max_values_per_column``
distinct text values per column, each at most ``MAX_VALUE_CHARS`` long (longer texts are
descriptions nobody quotes in a question).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqltrain.io import atomic_write_json, file_sha256
from sqltrain.linking.words import STOPWORDS, normalize_value, stem, words
from sqltrain.spider.schema import Schema
from sqltrain.stages import CACHES

INDEX_VERSION = CACHES["value-index"].version
"""Bumped in the stage registry when the cached content changes meaning."""
MAX_VALUE_CHARS = 64
SAMPLE_CHARS = 40
MAX_NGRAM = 8
"""Longest question n-gram (in words) looked up among the values."""


@dataclass(frozen=True)
class ColumnFacts:
    decl_type: str
    """Type as declared in the database ("" when the file lacks the column)."""
    samples: tuple[str, ...]
    """First distinct non-null values, already written as SQL literals."""


@dataclass(frozen=True)
class ValueMatch:
    table: str
    column: str
    value: str
    """The database value, as stored."""
    ngram: str


def sql_literal(value: object, limit: int = SAMPLE_CHARS) -> str | None:
    """A value as a SQL literal for display; None for blobs."""
    if isinstance(value, bytes):
        return None
    if isinstance(value, str):
        text = value if len(value) <= limit else value[: limit - 3] + "..."
        return "'" + text.replace("'", "''") + "'"
    return repr(value) if isinstance(value, float) else str(value)


class ValueIndex:
    """Facts about one database; `match` finds question n-grams among its text values."""

    def __init__(self, db_id: str, facts: dict[str, dict[str, ColumnFacts]], values: list[tuple[str, str, list[str]]]):
        self.db_id = db_id
        self._facts = {t.lower(): {c.lower(): f for c, f in cols.items()} for t, cols in facts.items()}
        self._values: dict[str, list[tuple[str, str, str]]] = {}
        for table, column, vals in values:
            for v in vals:
                key = _stem_key(normalize_value(v))
                if key:
                    self._values.setdefault(key, []).append((table, column, v))
        # Which n-grams can match at all: skip a question position whose word starts no value.
        self._first_words = {k.split(" ", 1)[0] for k in self._values}
        self._max_words = max((k.count(" ") + 1 for k in self._values), default=0)

    def facts(self, table: str, column: str) -> ColumnFacts | None:
        return self._facts.get(table.lower(), {}).get(column.lower())

    def match(self, question: str, max_matches: int = 24) -> list[ValueMatch]:
        """Values spelled out in the question, longest n-grams first, without overlaps."""
        toks = words(question)
        stems = [stem(t) for t in toks]
        starts = [i for i, s in enumerate(stems) if s in self._first_words]
        used = [False] * len(toks)
        out: list[ValueMatch] = []
        for n in range(min(MAX_NGRAM, self._max_words, len(toks)), 0, -1):
            for i in starts:
                if i + n > len(toks) or any(used[i : i + n]) or not _worth_looking_up(toks[i : i + n]):
                    continue
                hits = self._values.get(" ".join(stems[i : i + n]))
                if hits:
                    used[i : i + n] = [True] * n
                    out.extend(ValueMatch(t, c, v, " ".join(toks[i : i + n])) for t, c, v in hits)
        return out[:max_matches]


def _stem_key(normalized: str) -> str:
    # "cats" in a question meets the value "cat"; both sides are stemmed the same way.
    return " ".join(stem(w) for w in normalized.split(" ")) if normalized else ""


def _worth_looking_up(gram: list[str]) -> bool:
    if all(t in STOPWORDS for t in gram):
        return False
    if len(gram) == 1:
        t = gram[0]
        # Short numbers match far too many coded text columns to mean anything.
        return len(t) > 1 and not (t.isdigit() and len(t) < 4)
    return True


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _read_facts(con: sqlite3.Connection, schema: Schema, max_values: int, k: int):
    facts: dict[str, dict[str, ColumnFacts]] = {}
    values: list[tuple[str, str, list[str]]] = []
    for table in schema.tables:
        declared = {r[1].lower(): r[2] for r in con.execute(f"PRAGMA table_info({_quote(table.name)})")}
        facts[table.name] = {}
        for col in table.columns:
            if col.name.lower() not in declared:
                facts[table.name][col.name] = ColumnFacts("", ())
                continue
            q, t = _quote(col.name), _quote(table.name)
            rows = con.execute(f"SELECT DISTINCT {q} FROM {t} WHERE {q} IS NOT NULL AND {q} != '' LIMIT ?", (k,))
            samples = tuple(s for s in (sql_literal(r[0]) for r in rows) if s is not None)
            facts[table.name][col.name] = ColumnFacts(declared[col.name.lower()], samples)
            texts = con.execute(
                f"SELECT DISTINCT {q} FROM {t} WHERE typeof({q}) = 'text' AND length({q}) <= ? LIMIT ?",
                (MAX_VALUE_CHARS, max_values),
            )
            vals = [r[0] for r in texts]
            if vals:
                values.append((table.name, col.name, vals))
    return facts, values


def build_value_index(db_path: str | os.PathLike, schema: Schema, max_values: int, sample_values: int) -> dict:
    """Read a database into the cacheable form (plain JSON data)."""
    con = sqlite3.connect(f"file:{Path(db_path).absolute()}?mode=ro&immutable=1", uri=True)
    con.text_factory = lambda b: b.decode("utf-8", errors="replace")
    try:
        facts, values = _read_facts(con, schema, max_values, sample_values)
    finally:
        con.close()
    return {
        "db_id": schema.db_id,
        "facts": {t: {c: [f.decl_type, list(f.samples)] for c, f in cols.items()} for t, cols in facts.items()},
        "values": values,
    }


def _from_data(data: dict) -> ValueIndex:
    facts = {t: {c: ColumnFacts(d, tuple(s)) for c, (d, s) in cols.items()} for t, cols in data["facts"].items()}
    return ValueIndex(data["db_id"], facts, [tuple(v) for v in data["values"]])


def cache_key(db_path: Path, schema: Schema, max_values: int, sample_values: int) -> str:
    names = [[t.name, [c.name for c in t.columns]] for t in schema.tables]
    settings = json.dumps([INDEX_VERSION, max_values, sample_values, names])
    return hashlib.sha256((file_sha256(db_path) + settings).encode()).hexdigest()[:20]


def ensure_value_index(db_path: str | os.PathLike, schema: Schema, max_values: int, sample_values: int,
                       cache_dir: str | os.PathLike) -> Path:
    """The cache file of one database's value index, built now if it is missing (not parsed:
    the prepare driver only needs the files to exist before its workers start)."""
    db_path = Path(db_path)
    path = Path(os.path.expanduser(cache_dir)) / f"{schema.db_id}-{cache_key(db_path, schema, max_values, sample_values)}.json"
    if not path.exists():
        atomic_write_json(path, build_value_index(db_path, schema, max_values, sample_values))
    return path


def load_value_index(db_path: str | os.PathLike | None, schema: Schema, max_values: int, sample_values: int,
                     cache_dir: str | os.PathLike) -> ValueIndex:
    """The value index of one database, from the cache or built (and cached) now.

    A missing database file gives an empty index: no types, samples or value matches.
    """
    if db_path is None or not Path(db_path).exists():
        return ValueIndex(schema.db_id, {}, [])
    path = ensure_value_index(db_path, schema, max_values, sample_values, cache_dir)
    try:
        return _from_data(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, ValueError, TypeError):
        data = build_value_index(db_path, schema, max_values, sample_values)  # a corrupt entry is rebuilt
        atomic_write_json(path, data)
        return _from_data(data)
