"""Spider exact-set match: the official component semantics on known equal and unequal pairs."""

from __future__ import annotations

import json

import pytest

from sqltrain.evaluate.exact_match import exact_match
from sqltrain.spider.schema import Column, ForeignKey, Schema, Table

GOLD = ("SELECT T1.name, count(*) FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id "
        "WHERE T1.age > 20 AND T1.country = 'France' GROUP BY T1.name ORDER BY count(*) DESC LIMIT 3")

EQUAL = {
    "different values": GOLD.replace("20", "65").replace("'France'", '"Spain"').replace("LIMIT 3", "LIMIT 1"),
    "alias renaming": GOLD.replace("T1", "s").replace("T2", "c"),
    "no aliases": ("SELECT singer.name, count(*) FROM singer JOIN concert ON singer.id = concert.singer_id "
                   "WHERE singer.age > 20 AND singer.country = 'France' GROUP BY singer.name "
                   "ORDER BY count(*) DESC LIMIT 3"),
    # official eval_sel and eval_where compare multisets: order inside SELECT and WHERE-AND is free
    "select order": GOLD.replace("T1.name, count(*)", "count(*), T1.name"),
    "where conditions reordered": GOLD.replace("T1.age > 20 AND T1.country = 'France'",
                                               "T1.country = 'France' AND T1.age > 20"),
    "case and whitespace": GOLD.lower().replace(" ", "  "),
    "distinct ignored": GOLD.replace("SELECT T1.name", "SELECT DISTINCT T1.name"),
    "join order": GOLD.replace("singer AS T1 JOIN concert AS T2", "concert AS T2 JOIN singer AS T1"),
    "ON condition not compared": GOLD.replace("T1.id = T2.singer_id", "T1.id = T2.id"),
}

UNEQUAL = {
    "different column": GOLD.replace("SELECT T1.name", "SELECT T1.country"),
    "different agg": GOLD.replace("T1.name, count(*)", "T1.name, max(T1.age)"),
    "missing where condition": GOLD.replace(" AND T1.country = 'France'", ""),
    "different operator": GOLD.replace("T1.age > 20", "T1.age < 20"),
    "and vs or": GOLD.replace(" AND T1.country", " OR T1.country"),
    "order direction": GOLD.replace("DESC", "ASC"),
    "no limit": GOLD.replace(" LIMIT 3", ""),
    "no order": GOLD.replace(" ORDER BY count(*) DESC LIMIT 3", ""),
    "extra table": GOLD.replace("ON T1.id = T2.singer_id",
                                "ON T1.id = T2.singer_id JOIN stadium AS T3 ON T3.id = T2.id"),
    "group by other column": GOLD.replace("GROUP BY T1.name", "GROUP BY T1.country"),
    "extra having": GOLD.replace("GROUP BY T1.name", "GROUP BY T1.name HAVING count(*) > 1"),
    "not in keyword": GOLD.replace("T1.age > 20", "T1.age NOT IN (1, 2)"),
}


@pytest.mark.parametrize("pred", EQUAL.values(), ids=EQUAL.keys())
def test_known_equal_pairs(pred):
    assert exact_match(pred, GOLD)
    assert exact_match(GOLD, pred)


@pytest.mark.parametrize("pred", UNEQUAL.values(), ids=UNEQUAL.keys())
def test_known_unequal_pairs(pred):
    assert not exact_match(pred, GOLD)
    assert not exact_match(GOLD, pred)


def test_set_operations_compare_by_kind_and_recursively():
    a = "SELECT name FROM t WHERE x > 1 {op} SELECT name FROM t WHERE y < 2"
    assert exact_match(a.format(op="UNION"), a.format(op="union").replace("2", "9"))
    assert not exact_match(a.format(op="UNION"), a.format(op="INTERSECT"))
    assert not exact_match(a.format(op="EXCEPT"), a.format(op="EXCEPT").replace("y < 2", "y > 2"))
    assert not exact_match("SELECT name FROM t WHERE x > 1", a.format(op="UNION"))


def test_nested_subqueries_compare_structurally():
    gold = "SELECT name FROM t WHERE id IN (SELECT t_id FROM s WHERE v = 'a')"
    assert exact_match(gold.replace("'a'", "'b'"), gold)  # values are dropped inside too
    assert not exact_match(gold.replace("t_id", "other_id"), gold)
    # official: DISTINCT is cleared only in the outer query, not in a subquery used as a value
    assert not exact_match(gold.replace("SELECT t_id", "SELECT DISTINCT t_id"), gold)


def test_group_by_compares_bare_column_names():
    # official eval_group drops the table: t.a and s.a are the same GROUP BY column ...
    gold = "SELECT count(*) FROM t JOIN s ON t.id = s.id GROUP BY t.a"
    pred = "SELECT count(*) FROM t JOIN s ON t.id = s.id GROUP BY s.a"
    # ... but eval_having compares full column ids, so the match still fails overall.
    assert not exact_match(pred, gold)


SCHEMA = Schema(
    "school",
    (
        Table("student", "student", (Column("id", "id", "number", True), Column("name", "name", "text"))),
        Table("enroll", "enroll", (Column("student_id", "student id", "number"), Column("course", "course", "text"))),
    ),
    (ForeignKey("enroll", "student_id", "student", "id"),),
)


def test_schema_resolves_unqualified_columns():
    gold = "SELECT T1.name FROM student AS T1 JOIN enroll AS T2 ON T1.id = T2.student_id WHERE T2.course = 'x'"
    pred = "SELECT name FROM student JOIN enroll ON id = student_id WHERE course = 'y'"
    assert exact_match(pred, gold, SCHEMA)
    assert not exact_match(pred, gold)  # without a schema, two tables leave `name` unresolved


def test_foreign_key_linked_columns_count_as_one():
    gold = "SELECT T2.student_id FROM student AS T1 JOIN enroll AS T2 ON T1.id = T2.student_id"
    pred = "SELECT T1.id FROM student AS T1 JOIN enroll AS T2 ON T1.id = T2.student_id"
    assert exact_match(pred, gold, SCHEMA)
    assert not exact_match(pred, gold)


@pytest.mark.parametrize("pred", ["", "SELEC name FROM t", "SELECT name FROM", "DROP TABLE t",
                                  "SELECT 1; SELECT 2", "I think the answer is 42", None])
def test_unparseable_prediction_is_a_miss_never_an_error(pred):
    assert exact_match(pred, "SELECT name FROM t") is False


def test_unparseable_gold_raises():
    with pytest.raises(ValueError):
        exact_match("SELECT name FROM t", "SELECT name FROM")


@pytest.mark.spider
def test_every_dev_gold_matches_itself_and_not_its_neighbour(spider_dir):
    from sqltrain.spider.benchmark import SpiderBenchmark

    bench = SpiderBenchmark(spider_dir)
    dev = json.loads((spider_dir / "dev.json").read_text(encoding="utf-8"))
    failed = [i for i, ex in enumerate(dev) if not exact_match(ex["query"], ex["query"], bench.schemas[ex["db_id"]])]
    assert failed == []
    # Guard against a comparison that is always true: dev lists most questions twice with the
    # same or a near-identical query, so count pairs of different queries that still match.
    pairs = [(a, b) for a, b in zip(dev, dev[1:]) if a["db_id"] == b["db_id"] and a["query"] != b["query"]]
    matched = sum(exact_match(a["query"], b["query"], bench.schemas[a["db_id"]]) for a, b in pairs)
    assert 0 < matched < len(pairs)


# -- issue 13, point 9: names must exist (the official parser resolves every one) ------------------
ENROLL_GOLD = "SELECT T1.name FROM student AS T1 JOIN enroll AS T2 ON T1.id = T2.student_id WHERE T2.course = 'x'"


def _on(condition: str) -> str:
    return ENROLL_GOLD.replace("T1.id = T2.student_id", condition)


@pytest.mark.parametrize("pred,matches", [
    (ENROLL_GOLD, True),
    (_on("T1.id = T2.course"), True),  # official: ON is not compared, only resolved
    (_on("T1.id = T2.id"), False),  # enroll has no id column
    (_on("T1.uid = T2.student_id"), False),
    (_on("T1.id = T9.student_id"), False),  # no such alias or table
    (_on("id = grade"), False),  # unqualified, in no table
    (_on("T1.id = T2.student_id AND T2.grade > 1"), False),
], ids=["same", "other existing ON column", "missing right column", "missing left column", "unknown alias",
        "unqualified missing column", "extra condition on a missing column"])
def test_names_must_exist_in_the_schema(pred, matches):
    assert exact_match(pred, ENROLL_GOLD, SCHEMA) is matches


def test_a_gold_query_naming_missing_columns_is_matched_without_the_check():
    gold = "SELECT T1.name FROM student AS T1 JOIN enroll AS T2 ON T1.id = T2.id"  # enroll.id is missing
    assert exact_match(gold, gold, SCHEMA)


def test_long_predictions_are_not_parsed():
    from sqltrain.evaluate.exact_match import MAX_PREDICTION_CHARS

    padded = ENROLL_GOLD + " " * MAX_PREDICTION_CHARS  # the same query, past the size cap
    assert exact_match(ENROLL_GOLD + "   ", ENROLL_GOLD, SCHEMA)
    assert not exact_match(padded, ENROLL_GOLD, SCHEMA)


@pytest.mark.spider
def test_dev_213_join_on_a_missing_column_is_not_an_exact_match(spider_dir):
    from sqltrain.spider.benchmark import SpiderBenchmark

    bench = SpiderBenchmark(spider_dir)
    ex = bench.examples("dev", check_db=False)[213]
    assert ex.db_id == "flight_2" and "T1.Airline  =  T2.uid" in ex.query
    pred = ex.query.replace("T2.uid", "T2.id")  # airlines has uid, no id: execution fails
    assert exact_match(ex.query, ex.query, bench.schemas["flight_2"])
    assert not exact_match(pred, ex.query, bench.schemas["flight_2"])
