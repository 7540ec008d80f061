"""Fill question templates with values from a database and keep only sound gold queries.

Sound means: the SQL executes (a failure is a bug in a template and raises), the answer is
not empty (nor a lone 0/NULL), and ORDER BY does not make the answer depend on how SQLite
breaks ties. The last check parses SQL, so callers run it only on the queries they keep.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from sqltrain.minibench.model import SlotSource, Template


class MiniGenerationError(RuntimeError):
    """A template produced SQL that does not run: a bug in the generator, never in the data."""


@dataclass(frozen=True)
class Instance:
    pattern: str
    template: str
    """The template's SQL with holes: instances sharing it have the same structure."""
    question: str
    sql: str


def render_value(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def sql_literal(v: object) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, (int, float)):
        return render_value(v)
    raise MiniGenerationError(f"cannot write {v!r} as a SQL literal")


class _SqlSlot:
    """A slot value inside str.format: `{v}`, `{v[1]}`, `{v:like}` and `{v:prefix}`."""

    def __init__(self, values: tuple):
        self.values = values

    def __getitem__(self, i: int) -> "_SqlSlot":
        return _SqlSlot((self.values[i],))

    def __format__(self, spec: str) -> str:
        if spec == "like":
            return sql_literal(f"%{self.values[0]}%")
        if spec == "prefix":
            return sql_literal(f"{self.values[0]}%")
        if len(self.values) != 1:
            raise MiniGenerationError(f"multi-column slot {self.values!r} used as one value")
        return sql_literal(self.values[0])


class _TextSlot:
    """A slot value inside a question: `{v}` (columns joined by spaces) and `{v[1]}`."""

    def __init__(self, values: tuple):
        self.values = values

    def __getitem__(self, i: int) -> "_TextSlot":
        return _TextSlot((self.values[i],))

    def __format__(self, spec: str) -> str:
        return " ".join(render_value(v) for v in self.values)


def slot_rows(conn: sqlite3.Connection, source: SlotSource) -> list[tuple]:
    if isinstance(source, str):
        rows = run_sql(conn, source)
    elif isinstance(source, tuple):
        rows = [v if isinstance(v, tuple) else (v,) for v in source]
    else:
        rows = [r if isinstance(r, tuple) else (r,) for r in source(conn)]
    rows = {r for r in rows if all(v is not None for v in r)}
    return sorted(rows, key=lambda r: tuple((type(v).__name__, v) for v in r))


def run_sql(conn: sqlite3.Connection, sql: str) -> list[tuple]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error as e:
        raise MiniGenerationError(f"gold SQL fails ({e}): {sql}") from None


def informative(rows: list[tuple]) -> bool:
    """Non-empty, and not a lone 0 or NULL (a count of nothing teaches little)."""
    if not rows:
        return False
    return not (len(rows) == 1 and len(rows[0]) == 1 and rows[0][0] in (0, None))


def order_is_determined(conn: sqlite3.Connection, sql: str) -> bool:
    """True unless ORDER BY ties change which rows (LIMIT) or what order (no LIMIT) come back."""
    if "ORDER BY" not in sql:
        return True
    tree = sqlglot.parse_one(sql, read="sqlite")
    order = tree.args.get("order") if isinstance(tree, exp.Select) else None
    if order is None:
        return True
    keys = [o.this.copy() for o in order.expressions]
    limit = tree.args.get("limit")
    tree.set("limit", None)
    tree.set("expressions", keys + tree.expressions)
    rows = run_sql(conn, tree.sql(dialect="sqlite"))
    n = len(keys)
    if limit is not None:
        k = int(limit.expression.name)
        return len(rows) <= k or rows[k - 1][:n] != rows[k][:n]
    seen: dict[tuple, tuple] = {}
    return all(seen.setdefault(r[:n], r[n:]) == r[n:] for r in rows)


def instantiate(conn: sqlite3.Connection, tpl: Template, rng: random.Random) -> list[Instance]:
    """Up to `tpl.instances` distinct fillings that run and answer (check the order separately)."""
    sources = {name: slot_rows(conn, src) for name, src in tpl.slots}
    if any(not rows for rows in sources.values()):
        return []
    out: dict[str, Instance] = {}
    tries = tpl.instances * 6 if tpl.slots else 1
    for _ in range(tries):
        values = _pick(sources, tpl.slots, rng)
        if values is None:
            continue
        sql = tpl.sql.format_map({k: _SqlSlot(v) for k, v in values.items()})
        if sql in out or not informative(run_sql(conn, sql)):
            continue
        question = rng.choice(tpl.questions).format_map({k: _TextSlot(v) for k, v in values.items()})
        out[sql] = Instance(tpl.pattern, tpl.sql, question, sql)
        if len(out) >= tpl.instances:
            break
    return list(out.values())


def _pick(sources: dict[str, list[tuple]], slots, rng: random.Random) -> dict[str, tuple] | None:
    """One value per slot; slots drawing from the same source get different values."""
    values: dict[str, tuple] = {}
    for name, src in slots:
        taken = {values[n] for n, s in slots if n in values and s == src}
        choices = [r for r in sources[name] if r not in taken]
        if not choices:
            return None
        values[name] = rng.choice(choices)
    return values
