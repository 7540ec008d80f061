"""Prompts, records, length management and the Ray Data prepare pipeline (sqltrain.prep)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sqltrain.config import load_config
from sqltrain.prep.explain import explain_sql
from sqltrain.prep.prompts import PromptError, build_messages, normalize_sql, render_prompt
from sqltrain.prep.records import IGNORE_INDEX, RecordBuilder
from sqltrain.spider.benchmark import Example, SpiderBenchmark

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    from sqltrain.model.loading import load_tokenizer

    return load_tokenizer(load_config().model)


@pytest.fixture(scope="module")
def cfg(mini_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("value_index")
    return load_config(None, [f"data.spider_dir={mini_dir}", f"linking.cache_dir={cache}"])


@pytest.fixture(scope="module")
def mini(mini_dir) -> SpiderBenchmark:
    return SpiderBenchmark(mini_dir)


def with_overrides(cfg, **changes):
    """A copy of cfg with dotted fields changed (prompt__max_seq_len=300)."""
    data = cfg.to_dict()
    for key, value in changes.items():
        section, field = key.split("__")
        data[section][field] = value
    return type(cfg).model_validate(data)


# -- prompts ---------------------------------------------------------------------------------
def test_messages_and_chat_rendering(cfg, tokenizer):
    messages = build_messages("t(a PK)", "How many t?", cfg.prompt)
    assert messages == [
        {"role": "system", "content": cfg.prompt.system},
        {"role": "user", "content": "t(a PK)\n\n-- Question: How many t?\n-- SQL:"},
    ]
    text = render_prompt(tokenizer, messages)
    assert text.endswith("<|im_start|>assistant\n")  # generation prompt opened, no answer
    assert text.index(cfg.prompt.system) < text.index("t(a PK)") < text.index("How many t?")


def test_bad_user_template_names_the_field(cfg):
    bad = with_overrides(cfg, prompt__user_template="{schema} {sql}")
    with pytest.raises(PromptError, match="prompt.user_template"):
        build_messages("s", "q", bad.prompt)


def test_render_without_chat_template(cfg):
    class Plain:
        chat_template = None

    assert render_prompt(Plain(), build_messages("S", "Q", cfg.prompt)) == f"{cfg.prompt.system}\n\nS\n\n-- Question: Q\n-- SQL:\n"


def test_normalize_sql_keeps_literals():
    assert normalize_sql('SELECT  T1.a ,  b\n FROM t AS T1 WHERE x  =  "a  b" AND y = \'c\'\'  d\' ;') == (
        "SELECT T1.a , b FROM t AS T1 WHERE x = \"a  b\" AND y = 'c''  d'"
    )


def test_explanation_names_joins_filters_grouping_and_subqueries():
    sql = ("SELECT T1.name, count(*) FROM artist AS T1 JOIN performance AS T2 ON T1.Artist_ID = T2.Artist_ID "
           "WHERE T2.Fee > (SELECT avg(Fee) FROM performance) GROUP BY T1.name ORDER BY count(*) DESC LIMIT 3")
    assert explain_sql(sql) == (
        "Joins artist and performance on artist.Artist_ID = performance.Artist_ID; keeps rows where "
        "performance.Fee > subquery 1; groups by artist.name; sorts by COUNT(*) descending; takes the first 3 rows; "
        "returns artist.name, COUNT(*). Subquery 1: Reads performance; returns AVG(Fee)."
    )
    assert explain_sql("SELECT a FROM x INTERSECT SELECT a FROM y") == (
        "Keeps the rows that two queries both return (intersect): first, reads x; returns a; second, reads y; returns a."
    )


# -- records ---------------------------------------------------------------------------------
def test_labels_masked_on_the_prompt(cfg, mini, tokenizer):
    builder = RecordBuilder(cfg, mini, tokenizer)
    example = mini.examples("dev")[0]
    rec = builder.record(example)
    assert rec.dropped is None and len(rec.input_ids) == len(rec.labels)
    n_prompt = sum(1 for label in rec.labels if label == IGNORE_INDEX)
    assert rec.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert rec.labels[n_prompt:] == rec.input_ids[n_prompt:]
    assert tokenizer.decode(rec.input_ids[n_prompt:]) == normalize_sql(example.query) + tokenizer.eos_token
    # Generation renders the very same prompt (one code path).
    text, info = builder.generation_prompt(example)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == rec.input_ids[:n_prompt]
    assert info["prompt_tokens"] == n_prompt and not info["pruned"]


def _target_len(rec) -> int:
    return sum(1 for label in rec.labels if label != IGNORE_INDEX)


def test_length_management_prunes_harder_and_never_cuts_the_target(cfg, mini, tokenizer):
    example = next(e for e in mini.examples("train") if "JOIN" in e.query)
    full = RecordBuilder(cfg, mini, tokenizer).record(example)
    assert not full.pruned
    limit = len(full.input_ids) - 150
    tight = RecordBuilder(with_overrides(cfg, prompt__max_seq_len=limit), mini, tokenizer).record(example)
    assert tight.dropped is None and tight.pruned and tight.pruned_for_length
    assert len(tight.input_ids) <= limit
    target = full.input_ids[-_target_len(full):]
    assert tight.input_ids[-len(target):] == target and tight.labels[-len(target):] == target


def test_examples_that_cannot_fit_are_dropped_by_reason(cfg, mini, tokenizer):
    example = next(e for e in mini.examples("train") if "JOIN" in e.query)
    target = _target_len(RecordBuilder(cfg, mini, tokenizer).record(example))
    tiny = RecordBuilder(with_overrides(cfg, prompt__max_seq_len=target + 5), mini, tokenizer).record(example)
    assert tiny.dropped == "sql_too_long" and tiny.input_ids == []
    empty = render_prompt(tokenizer, build_messages("", example.question, cfg.prompt))
    overhead = len(tokenizer(empty, add_special_tokens=False)["input_ids"])
    squeezed = with_overrides(cfg, prompt__max_seq_len=overhead + target + 3)
    assert RecordBuilder(squeezed, mini, tokenizer).record(example).dropped == "schema_too_long"


def test_unparsable_gold_sql_is_dropped(cfg, mini, tokenizer):
    bad = Example("train", 0, "library", "What?", "SELECT FROM WHERE (")
    assert RecordBuilder(cfg, mini, tokenizer).record(bad).dropped == "unparsable_sql"


def test_default_spider_config_validates():
    cfg = load_config(REPO / "configs" / "smollm2-spider.yaml")
    assert cfg.model.name == "smollm2-135m" and cfg.linking.format == "ddl" and cfg.linking.prune
    assert cfg.data.spider_dir.endswith("shared/spider") and cfg.data.exclude.endswith("KNOWN_GAPS.tsv")


# -- the Ray Data pipeline -------------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared(cfg, tmp_path_factory):
    import ray

    from sqltrain.prep.pipeline import run_prepare

    started = not ray.is_initialized()
    run = tmp_path_factory.mktemp("run")
    small = with_overrides(cfg, data__num_shards=2, data__limit=60, linking__token_budget=256)
    small = type(cfg).model_validate({**small.to_dict(), "run_dir": str(run)})
    out = run_prepare(small).data_dir
    yield small, out
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_prepare_writes_two_shards_per_split_and_a_manifest(prepared):
    cfg, out = prepared
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["splits"]) == {"train", "dev"}
    for split, info in manifest["splits"].items():
        assert info["examples"] + sum(info["dropped"].values()) == 60
        assert len(info["shards"]) == 2 and sum(s["rows"] for s in info["shards"]) == info["examples"]
        assert set(info["tokens"]) == {"mean", "p50", "p95", "max"} and info["tokens"]["max"] <= cfg.prompt.max_seq_len
        assert {"table_recall", "column_recall", "schema_tokens_kept"} <= set(info["linking"])
        assert info["linking"]["table_recall"] >= 0.9 and 0 < info["linking"]["schema_tokens_kept"] < 1
        table = pa.concat_tables([pq.read_table(out / s["file"]) for s in info["shards"]])
        assert table.schema.field("input_ids").type == pa.list_(pa.int32())
        assert table.schema.field("labels").type == pa.list_(pa.int32())
        assert table.schema.field("length").type == pa.int32()
        assert table.column_names == ["input_ids", "labels", "length", "id", "db_id", "hardness"]
        rows = table.to_pylist()
        assert [r["id"] for r in rows] == [f"{split}-{i}" for i in range(60)][: len(rows)]  # benchmark order
        for r in rows:
            assert r["length"] == len(r["input_ids"]) == len(r["labels"])
            assert r["labels"][0] == IGNORE_INDEX and r["labels"][-1] == r["input_ids"][-1]
        alpaca = [json.loads(line) for line in (out / info["alpaca"]).read_text().splitlines()]
        assert len(alpaca) == info["examples"]
        assert set(alpaca[0]) == {"instruction", "input", "output", "explanation"}
        assert alpaca[0]["instruction"].startswith("CREATE TABLE")


@pytest.mark.slow
def test_prepare_reuses_and_reproduces_its_output(prepared):
    from sqltrain.prep.pipeline import run_prepare

    cfg, out = prepared
    shards = sorted(out.glob("*/*.parquet"))
    before = {p: (p.stat().st_mtime_ns, pq.read_table(p)) for p in shards}
    manifest = (out / "manifest.json").read_text()
    assert run_prepare(cfg).data_dir == out  # same config and inputs: reused untouched
    assert all(p.stat().st_mtime_ns == before[p][0] for p in shards)
    run_prepare(cfg, force=True)  # rebuilt: identical shards and manifest
    assert sorted(out.glob("*/*.parquet")) == shards
    assert all(pq.read_table(p).equals(before[p][1]) for p in shards)
    assert (out / "manifest.json").read_text() == manifest
