"""Tables and columns a gold SQL query references, resolved against the schema with sqlglot.

Used to measure linking recall: which of these survived pruning. Spider writes string
literals in double quotes, which SQLite (and sqlglot) read as identifiers; such "columns"
that resolve to no schema column are ignored, as are SELECT aliases and derived tables.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import traverse_scope

from sqltrain.spider.schema import Schema
from sqltrain.spider.sqlparts import parse_sql


class GoldParseError(ValueError):
    """The gold SQL could not be parsed."""


def _table_name(schema: Schema, name: str) -> str | None:
    table = schema.table(name)
    return table.name if table else None


def _resolve_column(schema: Schema, scope, column: exp.Column) -> tuple[str, str] | None:
    if column.table:
        # SQLite aliases are case-insensitive ("AS t2 ... T2.id"); sqlglot's scope keys are not.
        source = next((s for a, s in scope.sources.items() if a.lower() == column.table.lower()), None)
        candidates = [source.name] if isinstance(source, exp.Table) else []
    else:
        candidates = [s.name for s in scope.sources.values() if isinstance(s, exp.Table)]
    for name in candidates:
        table = schema.table(name)
        col = table.column(column.name) if table else None
        if col is not None:
            return table.name, col.name
    return None


def gold_references(sql: str, schema: Schema) -> tuple[set[str], set[tuple[str, str]]]:
    """(tables, (table, column) pairs) referenced by `sql`, with the schema's spelling."""
    try:
        tree = parse_sql(sql)  # cached: hardness and the explanation parse the same query
        scopes = traverse_scope(tree)
    except (ValueError, SqlglotError, RecursionError) as e:
        raise GoldParseError(f"cannot parse gold SQL {sql!r}: {e}") from None
    tables = {t for t in (_table_name(schema, n.name) for n in tree.find_all(exp.Table)) if t}
    columns: set[tuple[str, str]] = set()
    for scope in scopes:
        for column in scope.columns:
            ref = _resolve_column(schema, scope, column)
            if ref:
                columns.add(ref)
    return tables, columns
