"""The embedded mini benchmark: Spider layout, sound gold SQL, determinism, hardness mix, caching."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from sqltrain.io import OUTPUT_MARKER
from sqltrain.minibench import build as mini
from sqltrain.spider.benchmark import SpiderBenchmark
from sqltrain.spider.hardness import LEVELS, hardness
from sqltrain.minibench.fill import MiniGenerationError, instantiate, order_is_determined
from sqltrain.minibench.model import Template, natural_name

REPO = Path(__file__).resolve().parents[1]
JSON_FILES = ("tables.json", "train_spider.json", "dev.json")
GOLD_FILES = ("train_gold.sql", "dev_gold.sql")
SPIDER_TYPES = {"text", "number", "time", "boolean", "others"}


@pytest.fixture(scope="module")
def bench(mini_dir) -> SpiderBenchmark:
    return SpiderBenchmark(mini_dir)


def _dump(path: Path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def _query(path: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_loads_as_spider_benchmark(bench):
    train, dev = bench.examples("train"), bench.examples("dev")
    assert len(train) >= 400 and len(dev) >= 100
    assert len(bench.schemas) >= 8
    assert {e.db_id for e in train + dev} == set(bench.schemas)
    assert all(e.question.strip() and e.query.strip() for e in train + dev)
    for schema in bench.schemas.values():
        assert 3 <= len(schema.tables) <= 5, schema.db_id
        assert all(len(t.primary_keys) == 1 for t in schema.tables), schema.db_id
        assert schema.foreign_keys, schema.db_id
        for fk in schema.foreign_keys:  # every key points at its table's primary key
            assert schema.table(fk.ref_table).primary_keys == (fk.ref_column,), (schema.db_id, fk)


def test_dev_databases_are_disjoint_from_train(bench):
    train = {e.db_id for e in bench.examples("train")}
    dev = {e.db_id for e in bench.examples("dev")}
    assert len(train) >= 5 and len(dev) >= 3
    assert not train & dev


def test_tables_json_is_spider_format(mini_dir):
    for entry in json.loads((mini_dir / "tables.json").read_text()):
        cols, orig = entry["column_names"], entry["column_names_original"]
        assert cols[0] == orig[0] == [-1, "*"]
        assert len(cols) == len(orig) == len(entry["column_types"])
        assert set(entry["column_types"]) <= SPIDER_TYPES
        assert [c[0] for c in cols] == [c[0] for c in orig]
        assert all(nat == natural_name(o) for (_, nat), (_, o) in zip(cols[1:], orig[1:]))
        assert entry["table_names"] == [natural_name(t) for t in entry["table_names_original"]]
        tables_with_pk = sorted(cols[i][0] for i in entry["primary_keys"])
        assert tables_with_pk == list(range(len(entry["table_names_original"])))
        for a, b in entry["foreign_keys"]:
            assert 0 < a < len(cols) and 0 < b < len(cols) and b in entry["primary_keys"]


def test_databases_match_tables_json(bench):
    """Declared keys are real SQLite keys, the data satisfies them, and tables hold 20-200 rows."""
    for db_id, schema in bench.schemas.items():
        path = bench.db_path(db_id)
        assert _query(path, "PRAGMA foreign_key_check") == []
        declared = {(fk.table, fk.column, fk.ref_table, fk.ref_column) for fk in schema.foreign_keys}
        actual = {(t.name, row[3], row[2], row[4]) for t in schema.tables
                  for row in _query(path, f'PRAGMA foreign_key_list("{t.name}")')}
        assert actual == declared, db_id
        for t in schema.tables:
            (n,), = _query(path, f'SELECT count(*) FROM "{t.name}"')
            assert 20 <= n <= 200, (db_id, t.name, n)


def test_gold_files_match_json(mini_dir):
    for json_name, gold_name in (("train_spider.json", "train_gold.sql"), ("dev.json", "dev_gold.sql")):
        records = json.loads((mini_dir / json_name).read_text())
        lines = (mini_dir / gold_name).read_text().splitlines()
        assert lines == [f"{r['query']}\t{r['db_id']}" for r in records]


def test_every_gold_query_executes_with_an_answer(bench):
    for e in bench.examples("train") + bench.examples("dev"):
        rows = _query(bench.db_path(e.db_id), e.query)
        assert rows and rows != [(0,)] and rows != [(None,)], (e.id, e.query)


def test_ordered_gold_queries_do_not_depend_on_ties(bench):
    ordered = [e for e in bench.examples("train") + bench.examples("dev") if "ORDER BY" in e.query]
    assert len(ordered) > 50
    for e in ordered:
        con = sqlite3.connect(f"file:{bench.db_path(e.db_id)}?mode=ro", uri=True)
        try:
            assert order_is_determined(con, e.query), (e.id, e.query)
        finally:
            con.close()


def test_questions_are_unique_per_database(bench):
    for split in ("train", "dev"):
        pairs = Counter((e.db_id, e.question) for e in bench.examples(split))
        assert max(pairs.values()) == 1, pairs.most_common(3)


def test_all_hardness_levels_in_spider_like_mix(bench):
    for split in ("train", "dev"):
        levels = Counter(hardness(e.query) for e in bench.examples(split))
        total = sum(levels.values())
        assert set(levels) == set(LEVELS), (split, levels)
        for level in LEVELS:
            assert abs(levels[level] / total - mini.MIX[level]) < 0.05, (split, levels)


FEATURES = {
    "JOIN": exp.Join, "GROUP BY": exp.Group, "HAVING": exp.Having, "ORDER BY": exp.Order, "LIMIT": exp.Limit,
    "UNION": exp.Union, "INTERSECT": exp.Intersect, "EXCEPT": exp.Except, "LIKE": exp.Like,
}


def _features(sql: str) -> set[str]:
    tree = sqlglot.parse_one(sql, read="sqlite")
    found = {name for name, node in FEATURES.items() if tree.find(node)}
    if any(isinstance(s.parent, (exp.In, exp.Subquery)) for s in tree.find_all(exp.Select) if s is not tree):
        found.add("nested SELECT")
    return found


def test_every_sql_feature_is_covered(bench):
    wanted = set(FEATURES) | {"nested SELECT"}
    for split in ("train", "dev"):
        seen = set().union(*(_features(e.query) for e in bench.examples(split)))
        assert seen >= wanted, (split, wanted - seen)


def test_generation_is_deterministic_across_processes(mini_dir, tmp_path):
    """Another process with another hash seed writes byte-identical JSON and identical tables."""
    other = tmp_path / "again"
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO))
    code = f"from sqltrain.minibench.build import write_mini_benchmark; write_mini_benchmark({str(other)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
    for name in JSON_FILES + GOLD_FILES:
        assert (mini_dir / name).read_bytes() == (other / name).read_bytes(), name
    dbs = sorted(p.relative_to(mini_dir) for p in (mini_dir / "database").glob("*/*.sqlite"))
    assert dbs == sorted(p.relative_to(other) for p in (other / "database").glob("*/*.sqlite"))
    for rel in dbs:
        assert _dump(mini_dir / rel) == _dump(other / rel), rel


def test_failed_generation_leaves_previous_dir_intact(tmp_path, monkeypatch):
    dest = tmp_path / "mini"
    dest.mkdir()
    (dest / "marker").write_text("old")
    (dest / OUTPUT_MARKER).write_text("")  # an earlier sqltrain output: replaceable, yet kept on failure

    def broken(*args, **kwargs):
        raise MiniGenerationError("boom")

    monkeypatch.setattr(mini, "database_examples", broken)
    with pytest.raises(MiniGenerationError):
        mini.write_mini_benchmark(dest)
    assert (dest / "marker").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]  # no temp dir left behind


def test_mini_benchmark_dir_reuses_a_complete_copy_and_repairs(mini_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SQLTRAIN_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "cache" / f"mini-v{mini.VERSION}"
    shutil.copytree(mini_dir, path)  # as if built by an earlier run of this code
    stamp = (path / "dev.json").stat().st_mtime_ns
    assert mini.mini_benchmark_dir() == path
    assert (path / "dev.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    victim = next((path / "database").glob("*/*.sqlite"))
    victim.unlink()
    assert mini.mini_benchmark_dir() == path
    assert victim.exists()  # incomplete -> regenerated
    assert len(SpiderBenchmark(path).examples("dev")) >= 100


def _memory_db() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    con.executescript("CREATE TABLE t(name TEXT, score INTEGER);"
                      "INSERT INTO t VALUES ('a', 3), ('b', 2), ('c', 2), ('d', 1);")
    return con


def test_order_check_rejects_ties_that_change_the_answer():
    con = _memory_db()
    assert order_is_determined(con, "SELECT name FROM t ORDER BY score DESC LIMIT 1")
    assert not order_is_determined(con, "SELECT name FROM t ORDER BY score DESC LIMIT 2")  # b or c
    assert order_is_determined(con, "SELECT name FROM t ORDER BY score DESC LIMIT 3")
    assert not order_is_determined(con, "SELECT name FROM t ORDER BY score")  # b, c in either order
    assert order_is_determined(con, "SELECT score FROM t ORDER BY score")  # ties look the same
    assert order_is_determined(con, "SELECT name FROM t")


def test_instantiate_fills_values_and_raises_on_broken_sql():
    import random

    con = _memory_db()
    tpl = Template("t", ("Which names have score {v}?",), "SELECT name FROM t WHERE score = {v}",
                   (("v", "SELECT DISTINCT score FROM t"),), instances=3)
    found = instantiate(con, tpl, random.Random(0))
    assert sorted(i.sql for i in found) == [f"SELECT name FROM t WHERE score = {n}" for n in (1, 2, 3)]
    assert all(i.question == f"Which names have score {i.sql[-1]}?" for i in found)
    quoted = Template("t", ("Score of {v}?",), "SELECT score FROM t WHERE name = {v}", (("v", ("O'Neil", "a")),), 2)
    assert [i.sql for i in instantiate(con, quoted, random.Random(0))] == ["SELECT score FROM t WHERE name = 'a'"]
    broken = Template("t", ("?",), "SELECT nope FROM t", instances=1)
    with pytest.raises(MiniGenerationError, match="SELECT nope FROM t"):
        instantiate(con, broken, random.Random(0))
