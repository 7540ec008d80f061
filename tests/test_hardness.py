"""Spider hardness: real dev queries with their official level, the official quirks, the dev split."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from sqltrain.spider.hardness import count_component1, count_component2, count_others, hardness
from sqltrain.spider.sqlparts import ColUnit, Condition, CondUnit, SqlParts, ValUnit, sql_parts

# (dev index, query, level given by the official evaluation.py)
DEV_LEVELS = [
    (0, "SELECT count(*) FROM singer", "easy"),
    (8, "SELECT DISTINCT country FROM singer WHERE age  >  20", "easy"),
    (153, "select distinct year from cars_data where weight between 3000 and 4000;", "easy"),
    # A FROM subquery is a second table unit but not a nested query, and there is no join here.
    (744, 'SELECT COUNT(*) FROM (SELECT T1.Name FROM country AS T1 JOIN countrylanguage AS T2 ON T1.Code  =  '
          'T2.CountryCode WHERE T2.Language  =  "English" INTERSECT SELECT T1.Name FROM country AS T1 JOIN '
          'countrylanguage AS T2 ON T1.Code  =  T2.CountryCode WHERE T2.Language  =  "Dutch")', "easy"),
    (2, "SELECT name ,  country ,  age FROM singer ORDER BY age DESC", "medium"),
    (4, "SELECT avg(age) ,  min(age) ,  max(age) FROM singer WHERE country  =  'France'", "medium"),
    (39, "SELECT name ,  country FROM singer WHERE song_name LIKE '%Hey%'", "medium"),
    (6, "SELECT song_name ,  song_release_year FROM singer ORDER BY age LIMIT 1", "medium"),
    (12, "SELECT song_name FROM singer WHERE age  >  (SELECT avg(age) FROM singer)", "hard"),
    (26, "SELECT YEAR FROM concert GROUP BY YEAR ORDER BY count(*) DESC LIMIT 1", "hard"),
    (28, "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)", "hard"),
    (30, "SELECT country FROM singer WHERE age  >  40 INTERSECT SELECT country FROM singer WHERE age  <  30", "hard"),
    (24, "SELECT T2.name ,  T2.capacity FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id  =  T2.stadium_id "
         "WHERE T1.year  >=  2014 GROUP BY T2.stadium_id ORDER BY count(*) DESC LIMIT 1", "extra"),
    (41, "SELECT T2.name ,  T2.location FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id  =  T2.stadium_id "
         "WHERE T1.Year  =  2014 INTERSECT SELECT T2.name ,  T2.location FROM concert AS T1 JOIN stadium AS T2 ON "
         "T1.stadium_id  =  T2.stadium_id WHERE T1.Year  =  2015", "extra"),
    # Official quirk: a NOT condition in WHERE counts as an aggregate (has_agg reads unit[0], the
    # NOT flag), so avg + NOT = 2 aggregates; without the quirk this would be "hard".
    (85, "select avg(age) from student where stuid not in (select stuid from has_pet)", "extra"),
    # Official quirk: the column value T2.DestAirport swallows "OR ..." up to GROUP, so no OR counts.
    (225, "SELECT T1.AirportCode FROM AIRPORTS AS T1 JOIN FLIGHTS AS T2 ON T1.AirportCode  =  T2.DestAirport OR "
          "T1.AirportCode  =  T2.SourceAirport GROUP BY T1.AirportCode ORDER BY count(*) DESC LIMIT 1", "extra"),
]


@pytest.mark.parametrize("index,sql,level", DEV_LEVELS, ids=[f"dev-{i}" for i, _, _ in DEV_LEVELS])
def test_real_dev_queries_get_their_official_level(index, sql, level):
    assert hardness(sql) == level


def test_or_after_a_column_value_is_swallowed_like_the_official_parser():
    # train 6288: the official parser sees one WHERE condition, hence "medium", not "hard".
    sql = ("SELECT T1.city FROM city AS T1 JOIN temperature AS T2 ON T1.city_id  =  T2.city_id "
           "WHERE T2.Mar  <  T2.Jul OR T2.Mar  >  T2.Oct")
    parts = sql_parts(sql)
    assert len(parts.where.units) == 1 and parts.where.ops == ()
    assert hardness(sql) == "medium"
    # With a literal value the OR is read normally.
    assert sql_parts("SELECT a FROM t WHERE b < 1 OR c > 2 AND d = 3").where.ops == ("or", "and")
    # A column value followed by AND is fine: the official parser stops at 'and'.
    assert sql_parts("SELECT a FROM t WHERE b < c AND d = 3 OR e = 4").where.ops == ("and", "or")


def test_having_connectors_count_as_aggregates():
    # Official count_agg(sql['having']) walks [cond, 'and', cond]: 'and'[0] != 0 counts as one
    # aggregate, so count(*) in SELECT plus one AND make two, one point in count_others.
    p = sql_parts("SELECT count(*) FROM t GROUP BY a HAVING a > 1 AND b > 2")
    assert count_others(p) == 1
    assert count_others(sql_parts("SELECT count(*) FROM t GROUP BY a HAVING a > 1")) == 0


def test_components_of_a_set_operation_count_only_the_left_query_plus_one_nested():
    p = sql_parts("SELECT a FROM t WHERE b LIKE 'x%' OR c = 1 UNION SELECT a FROM s ORDER BY a LIMIT 3")
    assert count_component2(p) == 1
    assert count_component1(p) == 3  # where, or, like; ORDER BY/LIMIT belong to the right SELECT
    assert p.union is not None and p.union.limit == 3 and p.order_dir is None


def test_chained_set_operations_nest_to_the_right():
    p = sql_parts("SELECT a FROM t EXCEPT SELECT a FROM s UNION SELECT a FROM r")
    assert p.except_ is not None and p.union is None
    assert p.except_.union is not None and p.except_.union.tables == ("__r__",)


@pytest.mark.parametrize("bad", ["SELEC a FROM t", "SELECT a FROM t WHERE (", "", "DROP TABLE t",
                                 "SELECT 1; SELECT 2"])
def test_unparseable_sql_raises_value_error(bad):
    with pytest.raises(ValueError):
        hardness(bad)


# -- against the real dev set ----------------------------------------------------------------
AGG_OPS = ("none", "max", "min", "count", "sum", "avg")
UNIT_OPS = ("none", "-", "+", "*", "/")
WHERE_OPS = ("not", "between", "=", ">", "<", ">=", "<=", "!=", "in", "like", "is", "exists")


def _official_to_parts(sql: dict, table: dict) -> SqlParts:
    """dev.json's 'sql' field (the official parse, with column indices) as SqlParts."""
    cols, names = table["column_names_original"], table["table_names_original"]

    def col(c):
        if c is None:
            return None
        t, name = cols[c[1]]
        return ColUnit(AGG_OPS[c[0]], "__all__" if t < 0 else f"__{names[t].lower()}.{name.lower()}__", bool(c[2]))

    def val(v):
        return ValUnit(UNIT_OPS[v[0]], col(v[1]), col(v[2]))

    def value(v):
        if isinstance(v, dict):
            return _official_to_parts(v, table)
        return col(v) if isinstance(v, list) else v.strip('"') if isinstance(v, str) else v

    def cond(c):
        return Condition(tuple(CondUnit(u[0], WHERE_OPS[u[1]], val(u[2]), value(u[3]), value(u[4])) for u in c[::2]),
                         tuple(c[1::2]))

    order = sql["orderBy"]
    return SqlParts(
        distinct=sql["select"][0], select=tuple((AGG_OPS[a], val(v)) for a, v in sql["select"][1]),
        tables=tuple(f"__{names[u[1]].lower()}__" if u[0] == "table_unit" else _official_to_parts(u[1], table)
                     for u in sql["from"]["table_units"]),
        join_conds=cond(sql["from"]["conds"]), where=cond(sql["where"]),
        group_by=tuple(col(c) for c in sql["groupBy"]), having=cond(sql["having"]),
        order_dir=order[0] if order else None, order_by=tuple(val(v) for v in order[1]) if order else (),
        limit=sql["limit"],
        **{k: _official_to_parts(sql[o], table) if sql[o] else None
           for k, o in (("intersect", "intersect"), ("union", "union"), ("except_", "except"))},
    )


@pytest.fixture(scope="module")
def dev(spider_dir):
    return json.loads((spider_dir / "dev.json").read_text(encoding="utf-8"))


@pytest.mark.spider
def test_dev_split_matches_the_official_counts(dev):
    assert Counter(hardness(ex["query"]) for ex in dev) == {"easy": 248, "medium": 446, "hard": 174, "extra": 166}


@pytest.mark.spider
def test_structure_equals_the_official_parse_stored_in_dev_json(dev, spider_dir):
    from sqltrain.spider.benchmark import SpiderBenchmark

    bench = SpiderBenchmark(spider_dir)
    tables = {t["db_id"]: t for t in json.loads((spider_dir / "tables.json").read_text(encoding="utf-8"))}
    differ = [
        i for i, ex in enumerate(dev)
        if sql_parts(ex["query"], bench.schemas[ex["db_id"]]) != _official_to_parts(ex["sql"], tables[ex["db_id"]])
    ]
    # 900/901 reuse alias T1 in both INTERSECT halves; the official parser keeps one alias map for
    # the whole query (T1 -> Likes everywhere), we resolve aliases per SELECT (T1 -> Friend on the left).
    assert differ == [900, 901]
