"""Typed evaluation records: the committed docs/results/ read back and re-serialise unchanged,
the summary and the paired comparison recompute from the records, and the JSON view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqltrain.evaluate.metrics import summarize_eval
from sqltrain.evaluate.records import EvalRecord, EvalSummary, Scores, read_records
from sqltrain.report.paired import compare
from sqltrain.typed_json import RecordError

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
EVAL_DIRS = sorted(p.parent for p in RESULTS.glob("*/eval/*/records.jsonl"))
SCORE_FIELDS = ("n", "ex", "exact_match", "by_hardness", "errors", "gold_errors")


def test_the_committed_results_are_there():
    assert len(EVAL_DIRS) >= 10


@pytest.mark.parametrize("eval_dir", EVAL_DIRS, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_committed_evaluations_read_and_reserialise_unchanged(eval_dir: Path):
    lines = (eval_dir / "records.jsonl").read_text(encoding="utf-8").splitlines()
    records = read_records(eval_dir / "records.jsonl")
    assert [json.dumps(r.to_json(), ensure_ascii=False) for r in records] == lines
    raw = json.loads((eval_dir / "summary.json").read_text())
    summary = EvalSummary.read(eval_dir / "summary.json")
    assert json.dumps(summary.to_json(), indent=2) == json.dumps(raw, indent=2)  # same keys, same order
    recomputed = summarize_eval(records, 0.0).to_json()
    assert {k: recomputed[k] for k in SCORE_FIELDS} == {k: raw[k] for k in SCORE_FIELDS}


@pytest.mark.parametrize("run, a, b, out", [
    ("qwen2.5-coder-0.5b-spider", "base", "finetuned", "compare"),
    ("qwen2.5-coder-0.5b-spider-27c23d1", "base-1026", "finetuned-1026", "compare"),
    ("qwen2.5-coder-0.5b-spider-27c23d1", "base-1034", "finetuned-1034", "compare-1034"),
    ("qwen2.5-coder-0.5b-spider-seed2", "base-1026", "finetuned-1026", "compare"),
])
def test_the_paired_comparison_reproduces_the_committed_one(run: str, a: str, b: str, out: str):
    committed = json.loads((RESULTS / run / out / "compare.json").read_text())
    result = compare(RESULTS / run / "eval" / a, RESULTS / run / "eval" / b, labels=("base", "finetuned"))
    assert {k: v for k, v in result.items() if k not in ("a", "b")} == \
        {k: v for k, v in committed.items() if k not in ("a", "b")}


@pytest.mark.spider
def test_scoring_the_committed_predictions_again_writes_the_same_records(spider_dir, tmp_path):
    from sqltrain.config import EvaluateConfig
    from sqltrain.evaluate.runner import evaluate_file

    run = RESULTS / "qwen2.5-coder-0.5b-spider-27c23d1"
    summary = evaluate_file(spider_dir, "dev", run / "predictions" / "finetuned.jsonl", tmp_path / "e", EvaluateConfig(),
                           exclude=spider_dir / "database" / "KNOWN_GAPS.tsv", progress=False)
    committed = run / "eval" / "finetuned-1026"
    assert (tmp_path / "e" / "records.jsonl").read_bytes() == (committed / "records.jsonl").read_bytes()
    assert summary.ex == EvalSummary.read(committed / "summary.json").ex


def test_records_read_like_the_json_they_are_written_as():
    r = EvalRecord(index=3, hardness="hard", correct=False, error="wrong_result", exact_match=False)
    assert r.to_json() == {"index": 3, "hardness": "hard", "correct": False, "error": "wrong_result",
                           "exact_match": False}
    assert r["error"] == "wrong_result" and "error" in r and "gold_error" not in r and r.get("db_id") is None
    assert r.gold_error is None  # the attribute has its default; the JSON never had the field
    with pytest.raises(KeyError):
        r["gold_error"]
    assert r == r.to_json() and EvalRecord.from_json(r.to_json()) == r
    s = EvalSummary(n=2, ex=0.5, by_hardness={"easy": Scores(n=2, ex=0.5, exact_match=0.0)})
    assert s["by_hardness"] == {"easy": {"n": 2, "ex": 0.5, "exact_match": 0.0}}
    assert s.by_hardness["easy"].ex == 0.5


@pytest.mark.parametrize("data, message", [
    ({"index": 0, "correct": True}, r"record 7: missing field 'exact_match'"),
    ({"index": 0, "correct": "maybe", "exact_match": True}, r"record 7: field 'correct': .*boolean"),
    ({"index": 0, "correct": True, "exact_match": True, "score": 1}, r"record 7: unknown field 'score'"),
    ([1, 2], r"record 7: expected a JSON object, got list"),
])
def test_bad_records_name_the_field(data, message):
    with pytest.raises(RecordError, match=message):
        EvalRecord.from_json(data, "record 7")
