"""A short natural-language account of a SQL query, derived from its sqlglot parse.

It names the tables and how they are joined, the filters, the grouping, the ordering, the
limit and what is returned, with the query's aliases (T1, T2) replaced by table names, e.g.
"Joins concert and stadium on concert.Stadium_ID = stadium.Stadium_ID; keeps rows where
concert.Year = 2014; returns stadium.Name." Subqueries are explained after their parent.
"""

from __future__ import annotations

from functools import lru_cache

from sqlglot import exp

from sqltrain.spider.sqlparts import parse_sql

_SET_OPS = {
    exp.Union: "Combines the rows of two queries (union)",
    exp.Intersect: "Keeps the rows that two queries both return (intersect)",
    exp.Except: "Keeps the rows of the first query that the second does not return (except)",
}


@lru_cache(maxsize=16384)  # paraphrased questions share their gold query
def explain_sql(sql: str) -> str:
    """One or a few sentences describing `sql`; ValueError when it does not parse."""
    subqueries: list[exp.Expression] = []
    text = _explain(parse_sql(sql), subqueries)
    sentences = [text]
    i = 0
    while i < len(subqueries):  # subqueries may contain further subqueries
        sentences.append(f"Subquery {i + 1}: {_explain(subqueries[i], subqueries)}")
        i += 1
    return " ".join(s.rstrip(".") + "." for s in sentences)


def _explain(node: exp.Expression, subqueries: list[exp.Expression]) -> str:
    while isinstance(node, exp.Subquery):
        node = node.this
    for kind, phrase in _SET_OPS.items():
        if isinstance(node, kind):
            left, right = _explain(node.left, subqueries), _explain(node.right, subqueries)
            return f"{phrase}: first, {_lower(left)}; second, {_lower(right)}"
    if not isinstance(node, exp.Select):
        return node.sql(dialect="sqlite")
    return _explain_select(_plain(node, subqueries))


def _plain(select: exp.Select, subqueries: list[exp.Expression]) -> exp.Select:
    """A copy with nested queries replaced by "subquery N" and aliases by table names."""

    def cut(node: exp.Expression) -> exp.Expression:
        # transform() works on a copy: the root is the node without a parent.
        nested = node.parent is not None and not isinstance(node.parent, exp.Subquery)
        if nested and isinstance(node, (exp.Subquery, exp.Select)):
            subqueries.append(node)
            return exp.column(f"subquery {len(subqueries)}", quoted=False)
        return node

    flat = select.copy().transform(cut, copy=False)  # one copy; the parse is shared (cached)
    aliases = {t.alias_or_name.lower(): t.name for t in _own_tables(flat) if t.alias}

    def dealias(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.table and node.table.lower() in aliases:
            return exp.column(node.name, table=aliases[node.table.lower()], quoted=node.this.quoted)
        if isinstance(node, exp.Table) and node.alias:
            return exp.table_(node.name)
        return node

    return flat.transform(dealias, copy=False)


def _own_tables(select: exp.Select) -> list[exp.Table]:
    sources = [select.args.get("from_")] + list(select.args.get("joins") or [])
    return [s.this for s in sources if s is not None and isinstance(s.this, exp.Table)]


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="sqlite")


def _explain_select(sel: exp.Select) -> str:
    tables = [t.name for t in _own_tables(sel)] or ["a derived table"]
    joins = [j.args["on"] for j in sel.args.get("joins") or [] if j.args.get("on") is not None]
    parts = [f"joins {_and(tables)}" + (f" on {' and '.join(_sql(c) for c in joins)}" if joins else "")
             if len(tables) > 1 else f"reads {tables[0]}"]
    if sel.args.get("where"):
        parts.append(f"keeps rows where {_sql(sel.args['where'].this)}")
    if sel.args.get("group"):
        parts.append("groups by " + ", ".join(_sql(g) for g in sel.args["group"].expressions))
    if sel.args.get("having"):
        parts.append(f"keeps groups where {_sql(sel.args['having'].this)}")
    if sel.args.get("order"):
        keys = [f"{_sql(o.this)} {'descending' if o.args.get('desc') else 'ascending'}" for o in sel.args["order"].expressions]
        parts.append("sorts by " + ", ".join(keys))
    if sel.args.get("limit"):
        n = _sql(sel.args["limit"].expression)
        parts.append("takes the first row" if n == "1" else f"takes the first {n} rows")
    distinct = "distinct " if sel.args.get("distinct") else ""
    parts.append(f"returns {distinct}" + ", ".join(_sql(e) for e in sel.expressions))
    return _upper("; ".join(parts))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]
