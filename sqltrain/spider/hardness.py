"""Spider's hardness levels (easy/medium/hard/extra), exactly as the official ``eval_hardness``.

The rules are those of ``Evaluator.eval_hardness`` in taoyds/spider ``evaluation.py`` (the
same in taoyds/test-suite-sql-eval), counted on the official SQL structure rebuilt from a
sqlglot parse (sqltrain.spider.sqlparts). The official counting has quirks that decide the
published split (248 easy / 446 medium / 174 hard / 166 extra on dev); they are kept on
purpose and marked "quirk" below.
"""

from __future__ import annotations

from functools import lru_cache

from sqltrain.spider.sqlparts import ColUnit, Condition, SqlParts, sql_parts

LEVELS = ("easy", "medium", "hard", "extra")


@lru_cache(maxsize=65536)
def hardness(sql: str) -> str:
    """'easy' | 'medium' | 'hard' | 'extra' for one gold query; ValueError if it does not parse."""
    parts = sql_parts(sql)
    c1, c2, others = count_component1(parts), count_component2(parts), count_others(parts)
    if c1 <= 1 and others == 0 and c2 == 0:
        return "easy"
    if (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0):
        return "medium"
    if (
        (others > 2 and c1 <= 2 and c2 == 0)
        or (2 < c1 <= 3 and others <= 2 and c2 == 0)
        or (c1 <= 1 and others == 0 and c2 <= 1)
    ):
        return "hard"
    return "extra"


def _conditions(p: SqlParts) -> tuple[Condition, Condition, Condition]:
    return p.join_conds, p.where, p.having


def count_component1(p: SqlParts) -> int:
    """WHERE, GROUP BY, ORDER BY, LIMIT, one per extra table unit (joins), ORs and LIKEs.

    Only the outermost query counts; nested queries are counted by component2 alone.
    """
    count = sum(map(bool, (p.where, p.group_by, p.order_dir is not None, p.limit is not None)))
    # quirk: every table unit after the first counts as a join, FROM subqueries included.
    count += max(len(p.tables) - 1, 0)
    conds = _conditions(p)
    count += sum(op == "or" for c in conds for op in c.ops)
    count += sum(u.op == "like" for c in conds for u in c.units)  # NOT LIKE counts too
    return count


def nested_queries(p: SqlParts) -> list[SqlParts]:
    """Official get_nestedSQL: subqueries used as condition values, then the set-operation right side.

    quirk: a subquery in FROM is not nested here (it only counts as a join in component1).
    """
    nested = [v for c in _conditions(p) for u in c.units for v in (u.val1, u.val2) if isinstance(v, SqlParts)]
    nested += [q for q in p.set_ops().values() if q is not None]
    return nested


def count_component2(p: SqlParts) -> int:
    return len(nested_queries(p))


def _has_agg(units: list[ColUnit]) -> int:
    return sum(u.agg != "none" for u in units)


def count_others(p: SqlParts) -> int:
    """More than one aggregate, select column, WHERE condition or GROUP BY column: one point each."""
    aggs = sum(agg != "none" for agg, _ in p.select)
    # quirk: the official has_agg(unit) tests unit[0]; for a WHERE cond_unit that is its NOT flag.
    aggs += sum(u.negated for u in p.where.units)
    aggs += _has_agg(list(p.group_by))
    aggs += _has_agg([v.left for v in p.order_by] + [v.right for v in p.order_by if v.right is not None])
    # quirk: HAVING is passed as the raw [cond, 'and', cond] list, so NOT flags count and every
    # 'and'/'or' string counts too ('a'[0] != 0); aggregates inside HAVING do not.
    aggs += sum(u.negated for u in p.having.units) + len(p.having.ops)
    return sum((aggs > 1, len(p.select) > 1, len(p.where.units) > 1, len(p.group_by) > 1))
