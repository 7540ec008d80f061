"""Spider layer: loading, every validation error path, skip-and-count, exclusions, schema model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sqltrain.spider.benchmark import SpiderBenchmark, SpiderFormatError, load_exclusions

TABLES = [{
    "db_id": "shop",
    "table_names_original": ["customer", "orders"],
    "table_names": ["customer", "orders"],
    "column_names_original": [[-1, "*"], [0, "Customer_ID"], [0, "Name"], [1, "Order_ID"], [1, "Customer_ID"], [1, "Total"]],
    "column_names": [[-1, "*"], [0, "customer id"], [0, "name"], [1, "order id"], [1, "customer id"], [1, "total"]],
    "column_types": ["text", "number", "text", "number", "number", "number"],
    "primary_keys": [1, 3],
    "foreign_keys": [[4, 1]],
}]
DEV = [
    {"question": "How many customers?", "query": "SELECT count(*) FROM customer", "db_id": "shop"},
    {"question": "Total of all orders?", "query": "SELECT sum(Total) FROM orders", "db_id": "shop"},
]


def make_dir(root: Path, dev=None, tables=None, with_db=True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tables.json").write_text(json.dumps(TABLES if tables is None else tables))
    (root / "dev.json").write_text(dev if isinstance(dev, str) else json.dumps(DEV if dev is None else dev))
    if with_db:
        (root / "database" / "shop").mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(root / "database" / "shop" / "shop.sqlite")
        con.executescript("CREATE TABLE customer(Customer_ID int primary key, Name text);"
                          "CREATE TABLE orders(Order_ID int primary key, Customer_ID int, Total real);"
                          "INSERT INTO customer VALUES (1,'Ann'); INSERT INTO orders VALUES (1,1,9.5);")
        con.close()
    return root


def test_loads_examples_and_schema(tmp_path):
    bench = SpiderBenchmark(make_dir(tmp_path / "s"))
    ex = bench.examples("dev")
    assert [e.index for e in ex] == [0, 1] and ex[0].id == "dev-0" and ex[0].db_id == "shop"
    schema = bench.schemas["shop"]
    assert schema.table_names == ["customer", "orders"]
    assert schema.table("ORDERS").primary_keys == ("Order_ID",)
    assert schema.table("customer").column("name").natural_name == "name"
    fk = schema.foreign_keys[0]
    assert (fk.table, fk.column, fk.ref_table, fk.ref_column) == ("orders", "Customer_ID", "customer", "Customer_ID")
    assert bench.db_variants("shop") == [bench.db_path("shop")]
    assert bench.available_splits() == ["dev"]


def test_malformed_json_names_file_and_line(tmp_path):
    root = make_dir(tmp_path / "s", dev='[{"question": "x",\n  "query": }]')
    with pytest.raises(SpiderFormatError, match=r"dev\.json: malformed JSON at line 2"):
        SpiderBenchmark(root).examples("dev")


@pytest.mark.parametrize("record, message", [
    ({"query": "SELECT 1", "db_id": "shop"}, "record 1: missing field 'question'"),
    ({"question": "q", "db_id": "shop"}, "record 1: missing field 'query'"),
    ({"question": "q", "query": "SELECT 1"}, "record 1: missing field 'db_id'"),
    ({"question": 3, "query": "SELECT 1", "db_id": "shop"}, "record 1: field 'question' must be str"),
    ({"question": "q", "query": "SELECT 1", "db_id": "nope"}, "record 1: field 'db_id': 'nope' is not in tables.json"),
    ("just a string", "record 1: expected an object"),
])
def test_bad_record_names_file_index_field(tmp_path, record, message):
    root = make_dir(tmp_path / "s", dev=[DEV[0], record])
    with pytest.raises(SpiderFormatError) as e:
        SpiderBenchmark(root).examples("dev")
    assert "dev.json" in str(e.value) and message in str(e.value)


def test_missing_sqlite_names_the_file(tmp_path):
    root = make_dir(tmp_path / "s", with_db=False)
    with pytest.raises(SpiderFormatError, match=r"record 0: field 'db_id': database file .*shop\.sqlite is missing"):
        SpiderBenchmark(root).examples("dev")
    assert len(SpiderBenchmark(root).examples("dev", check_db=False)) == 2


def test_skip_and_count_keeps_indices(tmp_path):
    bad = [DEV[0], {"query": "SELECT 1", "db_id": "shop"}, {"question": "q", "query": "x", "db_id": "nope"}, DEV[1]]
    bench = SpiderBenchmark(make_dir(tmp_path / "s", dev=bad), on_error="skip")
    assert [e.index for e in bench.examples("dev")] == [0, 3]
    assert bench.skipped == {"missing field": 1, "not in tables.json": 1}


def test_bad_tables_json(tmp_path):
    t = [dict(TABLES[0])]
    del t[0]["column_types"]
    root = make_dir(tmp_path / "s", tables=t)
    with pytest.raises(SpiderFormatError, match=r"tables\.json: record 0: missing field 'column_types'"):
        SpiderBenchmark(root).examples("dev")
    t = [dict(TABLES[0], foreign_keys=[[40, 1]])]
    root = make_dir(tmp_path / "s2", tables=t)
    schema = SpiderBenchmark(root).schemas["shop"]  # an FK to an unknown column is dropped, not fatal
    assert schema.foreign_keys == ()
    t = [dict(TABLES[0], column_names_original=[[-1, "*"], [7, "x"]], column_names=[[-1, "*"], [7, "x"]], column_types=["text", "text"])]
    with pytest.raises(SpiderFormatError, match=r"tables\.json: record 0: inconsistent schema"):
        SpiderBenchmark(make_dir(tmp_path / "s3", tables=t)).schemas


def test_missing_files_and_unknown_split(tmp_path):
    with pytest.raises(SpiderFormatError, match="not a directory"):
        SpiderBenchmark(tmp_path / "absent")
    root = make_dir(tmp_path / "s")
    with pytest.raises(SpiderFormatError, match="no file for split 'train'"):
        SpiderBenchmark(root).examples("train")
    with pytest.raises(ValueError, match="unknown split"):
        SpiderBenchmark(root).examples("valid")
    (root / "tables.json").unlink()
    with pytest.raises(SpiderFormatError, match="tables.json: missing"):
        SpiderBenchmark(root).examples("dev")


def test_exclusions(tmp_path):
    gaps = tmp_path / "gaps.tsv"
    gaps.write_text("# split\tindex\tdb_id\treason\ndev\t1\tshop\tbroken\ntrain\t0\tshop\tx\n")
    assert load_exclusions(gaps) == {("dev", 1), ("train", 0)}
    bench = SpiderBenchmark(make_dir(tmp_path / "s"))
    assert [e.index for e in bench.examples("dev", exclude=gaps)] == [0]
    gaps.write_text("dev\tone\tshop\n")
    with pytest.raises(SpiderFormatError, match="line 1"):
        load_exclusions(gaps)


def test_exclusions_apply_before_the_database_check(tmp_path):
    """Spider's formula_1: its database file is missing and all its examples are in the
    exclusion list, so the split loads (it raised SpiderFormatError before)."""
    root = make_dir(tmp_path / "s", tables=TABLES + [dict(TABLES[0], db_id="gone")])  # no gone.sqlite
    gone = {"question": "How many?", "query": "SELECT count(*) FROM customer", "db_id": "gone"}
    (root / "train_spider_slim.json").write_text(json.dumps([DEV[0], gone, DEV[1], gone]))
    gaps = tmp_path / "gaps.tsv"
    gaps.write_text("# split\tindex\tdb_id\treason\ntrain\t1\tgone\tdatabase not rebuilt\n"
                    "train\t3\tgone\tdatabase not rebuilt\ndev\t0\tshop\tbroken\n")
    with pytest.raises(SpiderFormatError, match=r"field 'db_id': database file .*gone\.sqlite is missing"):
        SpiderBenchmark(root).examples("train")
    bench = SpiderBenchmark(root)
    assert [e.index for e in bench.examples("train", exclude=gaps)] == [0, 2]
    assert [e.index for e in bench.examples("train", exclude={("train", 1), ("train", 3)})] == [0, 2]
    assert [e.index for e in bench.examples("dev", exclude=gaps)] == [1]  # the database check still passes shop
    # An exclusion list that misses one of them: the error names the example and the database.
    with pytest.raises(SpiderFormatError, match=r"split 'train' example 3: field 'db_id': database file .*gone\.sqlite "
                                                r"is missing; leave its examples out"):
        bench.examples("train", exclude={("train", 1)})
    assert [e.index for e in bench.examples("train", exclude={("train", 1)}, check_db=False)] == [0, 2, 3]
    # on_error="skip" drops and counts them, with and without a (partial) exclusion list.
    skip = SpiderBenchmark(root, on_error="skip")
    assert [e.index for e in skip.examples("train")] == [0, 2]
    assert skip.skipped == {"missing database file": 2}
    skip = SpiderBenchmark(root, on_error="skip")
    assert [e.index for e in skip.examples("train", exclude={("train", 1)})] == [0, 2]
    assert skip.skipped == {"missing database file": 1}


def test_train_split_concatenates_files(tmp_path):
    root = make_dir(tmp_path / "s")
    (root / "train_spider_slim.json").write_text(json.dumps(DEV))
    (root / "train_others.json").write_text(json.dumps(DEV[:1]))
    ex = SpiderBenchmark(root).examples("train")
    assert [e.index for e in ex] == [0, 1, 2] and ex[2].query == DEV[0]["query"]


@pytest.mark.spider
def test_real_spider_counts(spider_dir):
    bench = SpiderBenchmark(spider_dir)
    assert len(bench.schemas) == 166 and len(bench.sqlite_files) == 165
    assert len(bench.examples("dev")) == 1034
    train = bench.examples("train", check_db=False)
    assert len(train) == 8659
    assert sum(e.db_id == "formula_1" for e in train) == 80
    with pytest.raises(SpiderFormatError, match="formula_1"):
        bench.examples("train")
    gaps = spider_dir / "database" / "KNOWN_GAPS.tsv"
    assert len(bench.examples("dev", exclude=gaps)) == 1026


@pytest.mark.spider
def test_real_spider_train_and_validation_load_with_the_known_gaps(spider_dir):
    from sqltrain.spider.validation import ValidationCarve

    gaps = spider_dir / "database" / "KNOWN_GAPS.tsv"
    train_gaps = {i for split, i in load_exclusions(gaps) if split == "train"}
    bench = SpiderBenchmark(spider_dir)
    train = bench.examples("train", exclude=gaps)  # formula_1 has no database file; all 80 are in the list
    assert len(train) == 8659 - len(train_gaps) and not any(e.db_id == "formula_1" for e in train)
    carved = SpiderBenchmark(spider_dir, validation=ValidationCarve(0.1))  # the tune-*-ex configs' carve
    val, rest = carved.examples("validation", exclude=gaps), carved.examples("train", exclude=gaps)
    assert val and {e.db_id for e in val} == set(carved.validation_dbs)
    assert sorted(e.index for e in val + rest) == [e.index for e in train]


def test_cli_data_check_on_tiny_dir(tmp_path, capsys):
    from sqltrain.cli import main

    root = make_dir(tmp_path / "s")
    assert main(["data", "check", "--spider-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "dev: 2 examples on 1 dbs" in out and "1 in tables.json, 1 sqlite files" in out
    (root / "dev.json").write_text("[{")
    assert main(["data", "check", "--spider-dir", str(root)]) == 2
    assert "malformed JSON" in capsys.readouterr().err
