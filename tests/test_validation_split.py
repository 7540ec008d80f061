"""data.validation: whole train databases held out of training as split "validation"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sqltrain.config import ConfigError, load_config
from sqltrain.data import resolve_benchmark
from sqltrain.spider.benchmark import SpiderBenchmark, SpiderFormatError
from sqltrain.spider.validation import ValidationCarve, validation_databases

REPO = Path(__file__).resolve().parents[1]


def mini_cfg(mini_dir, *overrides: str):
    return load_config(None, [f"data.spider_dir={mini_dir}", "data.validation.fraction=0.2", *overrides])


# -- the carve ----------------------------------------------------------------------------------
def test_carve_is_whole_databases_and_disjoint_from_train(mini_dir) -> None:
    bench = resolve_benchmark(mini_cfg(mini_dir).data)
    train, val = bench.examples("train"), bench.examples("validation")
    assert len(bench.validation_dbs) == 1  # 0.2 of the mini benchmark's 5 train databases
    assert {e.db_id for e in val} == set(bench.validation_dbs)
    assert not {e.db_id for e in train} & set(bench.validation_dbs)
    everything = resolve_benchmark(load_config(None, [f"data.spider_dir={mini_dir}"]).data).examples("train")
    # every train example is on exactly one side; validation examples keep their train position
    assert sorted(e.index for e in train + val) == [e.index for e in everything]
    by_index = {e.index: e for e in everything}
    assert all(e.split == "validation" and by_index[e.index].query == e.query for e in val)


def test_carve_is_deterministic_across_processes() -> None:
    """sha256, not Python's salted `hash`: another interpreter with another hash seed agrees."""
    dbs = [f"db_{i}" for i in range(40)]
    here = validation_databases(dbs, ValidationCarve(0.1, seed=3))
    code = ("from sqltrain.spider.validation import ValidationCarve, validation_databases;"
            f"print(','.join(validation_databases({dbs!r}, ValidationCarve(0.1, seed=3))))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    there = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert there.stdout.strip().split(",") == here and len(here) == 4
    assert validation_databases(list(reversed(dbs)), ValidationCarve(0.1, seed=3)) == here  # order-free
    assert validation_databases(dbs, ValidationCarve(0.1, seed=4)) != here  # the seed draws another carve
    assert validation_databases(dbs, ValidationCarve(0.0)) == []


def test_carve_that_leaves_no_training_database_is_an_error() -> None:
    with pytest.raises(ValueError, match="leaving none to train on"):
        validation_databases(["only"], ValidationCarve(0.1))  # at least one is held out


def test_validation_split_without_a_carve_is_a_clear_error(mini_dir) -> None:
    bench = resolve_benchmark(load_config(None, [f"data.spider_dir={mini_dir}"]).data)
    with pytest.raises(SpiderFormatError, match="data.validation.fraction"):
        bench.examples("validation")


@pytest.mark.parametrize("overrides, field", [
    (["data.validation.fraction=0.7"], "data.validation.fraction"),
    (["data.validation.fraction=-0.1"], "data.validation.fraction"),
    (["data.validation.seed=-1"], "data.validation.seed"),
    (["data.validation.fraction=ten"], "data.validation.fraction"),
    (["data.eval_split=validation"], "data.validation.fraction > 0"),
    (["data.train_split=validation", "data.validation.fraction=0.1"], "train_split=validation"),
])
def test_bad_values_are_one_line_config_errors(overrides, field) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert field in str(err.value) and "\n" not in str(err.value)



def mini_without(mini_dir: Path, tmp_path: Path, db_id: str) -> Path:
    """A copy of the mini benchmark whose database `db_id` has no file (like Spider's formula_1)."""
    root = Path(shutil.copytree(mini_dir, tmp_path / "mini"))
    (root / "database" / db_id / f"{db_id}.sqlite").unlink()
    return root


def write_gaps(path: Path, examples) -> Path:
    """A KNOWN_GAPS.tsv listing `examples` by train position (what exclusion lists name)."""
    path.write_text("# split\tindex\tdb_id\treason\n"
                    + "".join(f"train\t{e.index}\t{e.db_id}\tdatabase not rebuilt\n" for e in examples))
    return path


def test_excluded_examples_of_a_held_out_database_without_its_file_are_left_out(mini_dir, tmp_path) -> None:
    carve = ValidationCarve(0.4)  # two of the mini benchmark's five train databases
    gone, kept = SpiderBenchmark(mini_dir, validation=carve).validation_dbs
    root = mini_without(mini_dir, tmp_path, gone)
    every = SpiderBenchmark(root).examples("train", check_db=False)
    gaps = write_gaps(tmp_path / "gaps.tsv", [e for e in every if e.db_id == gone])
    with pytest.raises(SpiderFormatError, match=rf"database file .*{gone}\.sqlite is missing"):
        SpiderBenchmark(root, validation=carve).examples("validation")
    bench = SpiderBenchmark(root, validation=carve)
    val = bench.examples("validation", exclude=gaps)
    assert val and {e.db_id for e in val} == {kept} and all(e.split == "validation" for e in val)
    assert val == [e for e in bench.examples("validation", check_db=False) if e.db_id != gone]
    as_set = {("train", e.index) for e in every if e.db_id == gone}  # exclusion lists name train positions
    assert bench.examples("validation", exclude=as_set) == val
    unlisted = {("validation", i) for _, i in as_set}  # not train positions: they leave nothing out
    assert bench.examples("validation", exclude=unlisted, check_db=False) == bench.examples("validation", check_db=False)
    train = bench.examples("train", exclude=gaps)
    assert train == bench.examples("train", check_db=False) and not {e.db_id for e in train} & {gone, kept}
    skip = SpiderBenchmark(root, on_error="skip", validation=carve)
    assert skip.examples("validation") == val and skip.skipped == {"missing database file": len(as_set)}


def test_generate_reads_the_validation_split_when_a_training_database_is_missing_and_excluded(mini_dir, tmp_path) -> None:
    """The crash this guards against: generate on split "validation" loaded all of train with
    the database check before the exclusions, and stopped at Spider's missing formula_1."""
    from sqltrain.generate.pipeline import build_prompt_rows

    held_out = SpiderBenchmark(mini_dir, validation=ValidationCarve(0.2)).validation_dbs
    gone = next(e.db_id for e in SpiderBenchmark(mini_dir).examples("train") if e.db_id not in held_out)
    root = mini_without(mini_dir, tmp_path, gone)
    gaps = write_gaps(tmp_path / "gaps.tsv", [e for e in SpiderBenchmark(root).examples("train", check_db=False)
                                              if e.db_id == gone])
    cfg = mini_cfg(root, f"data.exclude={gaps}", f"run_dir={tmp_path / 'run'}", f"linking.cache_dir={tmp_path / 'vi'}",
                   "generate.limit=5")
    rows = build_prompt_rows(cfg, "validation")
    assert len(rows) == 5 and {r["db_id"] for r in rows} == set(held_out)
    assert all(r["id"] == f"validation-{r['index']}" for r in rows)


# -- generate and evaluate read the same split ----------------------------------------------------
def test_generate_builds_prompts_for_the_validation_split(mini_dir, tmp_path) -> None:
    from sqltrain.generate.pipeline import build_prompt_rows, default_output

    cfg = mini_cfg(mini_dir, f"run_dir={tmp_path}", f"linking.cache_dir={tmp_path / 'vi'}", "generate.limit=5")
    rows = build_prompt_rows(cfg, "validation")
    held_out = resolve_benchmark(cfg.data).validation_dbs
    assert len(rows) == 5 and {r["db_id"] for r in rows} == set(held_out)
    assert all(r["id"] == f"validation-{r['index']}" for r in rows)
    assert default_output(cfg, None, "validation").name == "base-validation.jsonl"


def test_evaluate_scores_the_validation_split_against_train_gold(mini_dir, tmp_path) -> None:
    from sqltrain.evaluate.runner import run_evaluate

    cfg = mini_cfg(mini_dir, f"run_dir={tmp_path}", "data.eval_split=validation")
    val = resolve_benchmark(cfg.data).examples("validation")
    preds = tmp_path / "val.jsonl"
    # gold SQL for all but the first example, which gets a wrong answer
    lines = [{"index": e.index, "db_id": e.db_id, "sql": "SELECT 1" if i == 0 else e.query} for i, e in enumerate(val)]
    preds.write_text("".join(json.dumps(r) + "\n" for r in lines))
    summary = run_evaluate(cfg, preds, progress=False)
    assert summary.n == len(val) and summary.split == "validation"
    assert summary.ex == pytest.approx((len(val) - 1) / len(val), abs=1e-3)
    train_only = tmp_path / "train.jsonl"  # an index of a training database is not in the split
    first_train = resolve_benchmark(cfg.data).examples("train")[0]
    train_only.write_text(json.dumps({"index": first_train.index, "sql": "SELECT 1"}) + "\n")
    from sqltrain.evaluate.predictions import PredictionsError

    with pytest.raises(PredictionsError, match="not an example of split 'validation'"):
        run_evaluate(cfg, train_only, out_dir=tmp_path / "eval2", progress=False)


# -- prepare ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_prepares(mini_dir, tmp_path_factory):
    import ray

    from sqltrain.prep.pipeline import run_prepare

    started = not ray.is_initialized()
    cache = tmp_path_factory.mktemp("value_index")
    outs = []
    for name in ("run1", "run2"):
        run = tmp_path_factory.mktemp(name)
        cfg = mini_cfg(mini_dir, f"run_dir={run}", f"linking.cache_dir={cache}", "linking.token_budget=256")
        outs.append(run_prepare(cfg).data_dir)
    yield cfg, outs
    if started:
        ray.shutdown()


def shard_table(out: Path, split: str):
    import pyarrow as pa

    manifest = json.loads((out / "manifest.json").read_text())
    return pa.concat_tables([pq.read_table(out / s["file"]) for s in manifest["splits"][split]["shards"]])


@pytest.mark.slow  # starts Ray (the project's definition of slow); ~1 min on 2 busy cores
def test_prepare_keeps_validation_databases_out_of_the_training_shards(two_prepares) -> None:
    cfg, (out, _) = two_prepares
    manifest = json.loads((out / "manifest.json").read_text())
    held_out = manifest["validation"]["databases"]
    assert held_out == resolve_benchmark(cfg.data).validation_dbs and manifest["validation"]["num_databases"] == 1
    assert set(manifest["splits"]) == {"train", "dev", "validation"}
    train_dbs = set(shard_table(out, "train")["db_id"].to_pylist())
    val_dbs = set(shard_table(out, "validation")["db_id"].to_pylist())
    assert train_dbs and not train_dbs & set(held_out)
    assert val_dbs == set(held_out)
    assert manifest["validation"]["examples"] == manifest["splits"]["validation"]["examples"] > 0
    assert manifest["validation"]["train_databases"] == len(train_dbs)
    assert manifest["splits"]["train"]["examples"] + manifest["splits"]["validation"]["examples"] == 500


@pytest.mark.slow
def test_two_prepares_write_the_same_carve(two_prepares) -> None:
    _, (a, b) = two_prepares
    assert json.loads((a / "manifest.json").read_text())["validation"] == \
        json.loads((b / "manifest.json").read_text())["validation"]
    for split in ("train", "validation"):
        assert shard_table(a, split).equals(shard_table(b, split))
