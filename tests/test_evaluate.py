"""Metrics, predictions files, the runner (serial and Ray) and `sqltrain evaluate`, on a tiny
Spider-layout benchmark with test-suite variants, the mini benchmark and (when present) Spider."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from sqltrain.cli import main
from sqltrain.config import EvaluateConfig
from sqltrain.evaluate.metrics import summarize_eval
from sqltrain.evaluate.predictions import Prediction, PredictionsError, read_predictions
from sqltrain.evaluate.runner import Item, evaluate_predictions, plan_chunks, score_items
from sqltrain.spider.benchmark import SpiderBenchmark

CFG = EvaluateConfig(timeout_s=2.0)

TABLES = [{
    "db_id": "shop",
    "table_names_original": ["item", "sale"], "table_names": ["item", "sale"],
    "column_names_original": [[-1, "*"], [0, "id"], [0, "name"], [0, "price"], [1, "id"], [1, "item_id"], [1, "qty"]],
    "column_names": [[-1, "*"], [0, "id"], [0, "name"], [0, "price"], [1, "id"], [1, "item id"], [1, "qty"]],
    "column_types": ["text", "number", "text", "number", "number", "number", "number"],
    "primary_keys": [1, 4], "foreign_keys": [[5, 1]],
}]
GOLD = [
    "SELECT count(*) FROM item",
    "SELECT name FROM item ORDER BY price DESC",
    "SELECT name ,  price FROM item WHERE price  >  2",
    "SELECT item_id ,  sum(qty) FROM sale GROUP BY item_id",
    "SELECT name FROM item WHERE id NOT IN (SELECT item_id FROM sale)",
    "SELECT avg(price) FROM item",
    "SELECT name FROM item WHERE price  <  3",
]
PREDICTIONS = {
    0: "SELECT count(id) FROM item",  # same result, different SQL: EX yes, EM no
    1: "SELECT name FROM item ORDER BY price",  # wrong order where order matters
    2: "SELECT price, name FROM item WHERE price > 2",  # columns permuted: still correct
    3: "SELECT item_id, sum(qty) FROM sale WHERE item_id < 3 GROUP BY item_id",  # right on shop.sqlite only
    4: "DROP TABLE item",
    6: "SELEC name FROM item",
    # 5: no prediction
}


def _make_db(path: Path, items: list[tuple], sales: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL);"
                       "CREATE TABLE sale (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES item(id), qty INTEGER);")
    conn.executemany("INSERT INTO item VALUES (?, ?, ?)", items)
    conn.executemany("INSERT INTO sale VALUES (?, ?, ?)", sales)
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A Spider-layout dir: one db with a test-suite variant that tells prediction 3 apart."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "tables.json").write_text(json.dumps(TABLES))
    dev = [{"db_id": "shop", "query": q, "question": f"question {i}"} for i, q in enumerate(GOLD)]
    (root / "dev.json").write_text(json.dumps(dev))
    (root / "dev_gold.sql").write_text("".join(f"{q}\tshop\n" for q in GOLD))
    db = root / "database" / "shop"
    _make_db(db / "shop.sqlite", [(1, "pen", 1.5), (2, "ink", 3.0), (3, "pad", 2.0)], [(1, 1, 2), (2, 2, 1), (3, 1, 1)])
    _make_db(db / "shop_v2.sqlite", [(1, "pen", 1.0), (2, "ink", 4.0), (3, "pad", 2.5)], [(1, 1, 1), (2, 3, 5)])
    return root


def _sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- metrics ------------------------------------------------------------------------------------
def test_summarize_counts_by_hardness_and_error():
    recs = [
        {"correct": True, "exact_match": True, "hardness": "easy", "error": None, "gold_error": None},
        {"correct": False, "exact_match": True, "hardness": "easy", "error": "wrong_result", "gold_error": None},
        {"correct": True, "exact_match": False, "hardness": "hard", "error": None, "gold_error": None},
        {"correct": False, "exact_match": False, "hardness": "extra", "error": "gold_failed", "gold_error": "syntax"},
    ]
    s = summarize_eval(recs, 1.23456, split="dev")
    assert (s["n"], s["ex"], s["exact_match"]) == (4, 0.5, 0.5)
    assert s["by_hardness"]["easy"] == {"n": 2, "ex": 0.5, "exact_match": 1.0}
    assert s["by_hardness"]["medium"] == {"n": 0, "ex": 0.0, "exact_match": 0.0}
    assert s["by_hardness"]["hard"]["ex"] == 1.0 and s["by_hardness"]["extra"]["ex"] == 0.0
    assert s["errors"] == {"gold_failed": 1, "wrong_result": 1} and s["gold_errors"] == {"syntax": 1}
    assert s["seconds"] == 1.235 and s["split"] == "dev"


# -- predictions files ------------------------------------------------------------------------------
def test_read_jsonl_and_text(tmp_path):
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"index": 2, "sql": "SELECT 2", "db_id": "shop"}\n\n{"index": 0, "sql": "SELECT 0"}\n')
    assert read_predictions(jl) == [Prediction(2, "SELECT 2", "shop", 1), Prediction(0, "SELECT 0", None, 3)]
    txt = tmp_path / "p.sql"
    txt.write_bytes(b"SELECT 1\tshop\n\nSELECT '\xff'\r\n")
    preds = read_predictions(txt)
    assert [(p.index, p.db_id) for p in preds] == [(0, "shop"), (1, None), (2, None)]
    assert preds[1].sql == "" and preds[2].sql == "SELECT '\udcff'"  # undecodable byte kept, not fatal
    assert read_predictions(tmp_path / "p.jsonl", fmt="jsonl")[0].index == 2


@pytest.mark.parametrize("line,message", [
    ('{"index": "1", "sql": "x"}', "line 1: field 'index'"),
    ('{"index": 1}', "line 1: field 'sql'"),
    ('[1, 2]', "line 1: expected a JSON object"),
    ('{"index": 1, "sql": "x"', "line 1: not valid JSON"),
    ('{"index": 1, "sql": "x"}\n{"index": 1, "sql": "y"}', "line 2: index 1 already given on line 1"),
])
def test_bad_jsonl_names_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(PredictionsError, match=message):
        read_predictions(path)


# -- runner ---------------------------------------------------------------------------------------
def _preds() -> list[Prediction]:
    return [Prediction(i, sql, None, n + 1) for n, (i, sql) in enumerate(PREDICTIONS.items())]


def test_runner_scores_tiny_benchmark(tiny):
    before = _sha(tiny / "database")
    records, summary = evaluate_predictions(SpiderBenchmark(tiny), "dev", _preds(), CFG, progress=False)
    by = {r["index"]: r for r in records}
    assert [r["index"] for r in records] == list(PREDICTIONS)
    assert by[0]["correct"] and not by[0]["exact_match"] and by[0]["error"] is None
    assert not by[1]["correct"] and by[1]["error"] == "wrong_result"
    assert by[2]["correct"] and by[2]["exact_match"]  # permuted SELECT list: EM compares a bag too
    assert not by[3]["correct"] and by[3]["error"] == "wrong_result" and "shop_v2.sqlite" in by[3]["message"]
    assert by[4]["error"] == "denied" and by[6]["error"] == "syntax"
    assert by[0]["variants"] == 2 and by[0]["gold_rows"] == by[0]["pred_rows"] == 1
    assert by[0]["gold"] == GOLD[0] and by[0]["pred"] == PREDICTIONS[0] and by[0]["question"] == "question 0"
    assert summary["n"] == 6 and summary["missing"] == 1
    assert summary["ex"] == pytest.approx(2 / 6)
    assert summary["errors"] == {"denied": 1, "syntax": 1, "wrong_result": 2}
    assert _sha(tiny / "database") == before


def test_exclusions_and_misaligned_predictions(tiny, tmp_path):
    gaps = tmp_path / "gaps.tsv"
    gaps.write_text("# split\tindex\tdb_id\treason\ndev\t1\tshop\tbroken\ndev\t3\tshop\tbroken\n")
    records, summary = evaluate_predictions(SpiderBenchmark(tiny), "dev", _preds(), CFG, exclude=gaps, progress=False)
    assert sorted(r["index"] for r in records) == [0, 2, 4, 6] and summary["missing"] == 1
    with pytest.raises(PredictionsError, match="line 1: index 99 is not an example"):
        evaluate_predictions(SpiderBenchmark(tiny), "dev", [Prediction(99, "SELECT 1", None, 1)], CFG, progress=False)
    with pytest.raises(PredictionsError, match="line 4: db_id 'other'"):
        evaluate_predictions(SpiderBenchmark(tiny), "dev", [Prediction(0, "SELECT 1", "other", 4)], CFG, progress=False)


def test_plan_chunks_keeps_gold_groups_together():
    items = [Item(i, "a" if i < 9 else "b", f"G{i // 3}", "p") for i in range(12)]
    chunks = plan_chunks(items, max_chunk=2)
    assert sorted(it.key for c in chunks for it in c) == list(range(12))
    for c in chunks:
        assert len({it.db_id for it in c}) == 1
    golds = [{it.gold for it in c} for c in chunks]
    assert all(a.isdisjoint(b) for i, a in enumerate(golds) for b in golds[i + 1:])  # each gold runs once


@pytest.mark.slow
def test_ray_gives_the_same_records_as_serial(tiny):
    bench = SpiderBenchmark(tiny)
    items = [Item(k, "shop", GOLD[i], sql) for k, (i, sql) in enumerate(list(PREDICTIONS.items()) * 5)]
    serial = score_items(items, bench, CFG, progress=False, force="serial")
    ray_cfg = EvaluateConfig(timeout_s=2.0, num_workers=2)
    assert score_items(items, bench, ray_cfg, progress=False, force="ray") == serial


# -- CLI ----------------------------------------------------------------------------------------------
def test_cli_writes_summary_and_records(tiny, tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"index": i, "sql": s}) + "\n" for i, s in PREDICTIONS.items()))
    out = tmp_path / "eval"
    assert main(["evaluate", "--spider-dir", str(tiny), "--split", "dev", "--predictions", str(preds),
                 "--out", str(out), "--timeout", "3", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"n", "ex", "exact_match", "by_hardness", "errors", "seconds"} <= set(summary)
    assert summary["n"] == 6 and summary["timeout_s"] == 3.0
    assert all({"n", "ex", "exact_match"} <= set(v) for v in summary["by_hardness"].values())
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {"index", "correct", "exact_match", "error", "hardness", "gold", "pred"} <= set(records[0])
    assert "EX" in capsys.readouterr().out


def test_cli_text_predictions_and_errors(tiny, tmp_path, capsys):
    out = tmp_path / "gold"
    assert main(["evaluate", "--spider-dir", str(tiny), "--predictions", str(tiny / "dev_gold.sql"),
                 "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == len(GOLD) and summary["ex"] == 1.0 and summary["exact_match"] == 1.0
    bad = tmp_path / "bad.sql"
    bad.write_bytes(b"SELECT 1\tnot_shop\n")
    assert main(["evaluate", "--spider-dir", str(tiny), "--predictions", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "line 1: db_id 'not_shop'" in capsys.readouterr().err
    weird = tmp_path / "weird.sql"
    weird.write_bytes(b"SELECT '\xff'\nSELECT 1\x00\n")
    assert main(["evaluate", "--spider-dir", str(tiny), "--predictions", str(weird), "--out", str(tmp_path / "w"),
                 "--no-progress"]) == 0
    records = [json.loads(line) for line in (tmp_path / "w" / "records.jsonl").read_text().splitlines()]
    assert [r["error"] for r in records] == ["syntax", "syntax"]


def test_cli_on_mini_benchmark(mini_dir, tmp_path):
    out = tmp_path / "mini"
    assert main(["evaluate", "--spider-dir", str(mini_dir), "--split", "dev", "--predictions",
                 str(mini_dir / "dev_gold.sql"), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] > 0 and summary["ex"] == 1.0 and summary["exact_match"] == 1.0


def test_cli_spider_dir_mini_uses_embedded_benchmark(tmp_path):
    from sqltrain.minibench.build import mini_benchmark_dir

    out = tmp_path / "mini"
    assert main(["evaluate", "--spider-dir", "mini", "--predictions", str(mini_benchmark_dir() / "dev_gold.sql"),
                 "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["ex"] == 1.0


# -- real Spider ------------------------------------------------------------------------------------
def test_dev_gold_vs_gold(spider_dir, tmp_path):
    from sqltrain.evaluate.runner import evaluate_file

    summary = evaluate_file(spider_dir, "dev", spider_dir / "dev_gold.sql", tmp_path, EvaluateConfig(),
                           exclude=spider_dir / "database" / "KNOWN_GAPS.tsv", progress=False)
    assert summary["n"] == 1026
    assert summary["ex"] == 1.0 and summary["exact_match"] == 1.0, summary["errors"]


@pytest.mark.slow
def test_train_gold_vs_gold_finds_spiders_broken_gold(spider_dir):
    bench = SpiderBenchmark(spider_dir)
    preds = [Prediction(e.index, e.query) for e in bench.examples("train", check_db=False)]
    records, summary = evaluate_predictions(bench, "train", preds, EvaluateConfig(), progress=False,
                                            exclude=spider_dir / "database" / "KNOWN_GAPS.tsv")
    failed = {r["index"]: r["gold_error"] for r in records if not r["correct"]}
    assert failed == {3153: "syntax", 4513: "syntax", 4514: "syntax"}
    assert summary["exact_match"] == 1.0
