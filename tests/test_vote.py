"""generate.selection=execution_vote: candidates executed in the sandbox vote on their results."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sqltrain.config import ConfigError, EvaluateConfig, load_config
from sqltrain.generate.vote import apply_execution_vote, vote_db
from sqltrain.io import read_jsonl

EVAL = EvaluateConfig(timeout_s=5.0)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vote") / "pets.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE pet (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);
        INSERT INTO pet VALUES (1, 'Rex', 3), (2, 'Tom', 5), (3, 'Kit', 1);
    """)
    conn.commit()
    conn.close()
    return str(path)


def choose(db: str, sqls: list[str], logprobs=None):
    logprobs = logprobs or [None] * len(sqls)
    [(key, result, executions)] = vote_db(db, [(7, sqls, logprobs)], EVAL.timeout_s, EVAL.max_rows)
    assert key == 7 and executions == len(set(sqls))
    return result


def test_failing_candidates_are_dropped_and_the_majority_wins(db) -> None:
    sqls = ["SELECT nme FROM pet",  # no such column: three failing votes do not count
            "SELECT nme FROM pet",
            "SELECT nme FROM pet",
            "SELECT count(*) FROM pet",
            "SELECT name FROM pet WHERE age > 2",
            "SELECT name FROM pet WHERE age >= 3"]
    v = choose(db, sqls)
    assert (v.choice, v.survivors, v.votes) == (4, 3, 2)


def test_results_compare_as_bags_with_columns_permuted(db) -> None:
    sqls = ["SELECT id FROM pet",
            "SELECT name, age FROM pet ORDER BY age",  # order is one-sided: same bag as the next two
            "SELECT age, name FROM pet",
            "SELECT name, age FROM pet ORDER BY name"]
    assert choose(db, sqls).votes == 3
    both_ordered = ["SELECT name FROM pet ORDER BY age", "SELECT name FROM pet ORDER BY age DESC",
                    "SELECT name FROM pet ORDER BY age ASC"]
    v = choose(db, both_ordered)
    assert (v.choice, v.votes) == (0, 2)  # the two ascending lists agree; the descending one does not


def test_ties_go_to_the_most_probable_candidate(db) -> None:
    sqls = ["SELECT count(*) FROM pet", "SELECT max(age) FROM pet", "SELECT 5", "SELECT 3"]
    # {count, 3} and {max(age), 5} tie at two votes: the group holding the most probable member wins,
    # and within it that member is chosen
    v = choose(db, sqls, [-4.0, -3.0, -1.0, -2.0])
    assert (v.choice, v.votes) == (2, 2)
    v = choose(db, sqls, [-4.0, -3.0, -2.5, -0.5])
    assert (v.choice, v.votes) == (3, 2)
    assert choose(db, sqls).choice == 0  # no log-probabilities: the earliest group, its first member


def test_all_failing_falls_back_to_the_first_candidate(db) -> None:
    sqls = ["SELEC 1", "DELETE FROM pet", "SELECT * FROM nowhere", "DROP TABLE pet"]
    v = choose(db, sqls, [-9.0, -1.0, -2.0, -3.0])
    assert (v.choice, v.survivors, v.votes) == (0, 0, 0)
    with sqlite3.connect(db) as conn:  # the sandbox refused the writes
        assert conn.execute("SELECT count(*) FROM pet").fetchone() == (3,)


def test_apply_sets_sql_raw_and_selected(db) -> None:
    rows = [
        {"db_id": "pets", "sql": "SELECT 2", "raw": "r0",
         "candidates": [{"sql": "SELECT 2", "raw": "r0", "logprob": -1.0},
                        {"sql": "SELECT count(*) FROM pet", "raw": "r1", "logprob": -5.0},
                        {"sql": "SELECT 3", "raw": "r2", "logprob": float("nan")}]},
        {"db_id": "pets", "sql": "SELEC", "raw": "x",
         "candidates": [{"sql": "SELEC", "raw": "x", "logprob": -1.0}, {"sql": "SELEC", "raw": "x", "logprob": -1.0}]},
    ]
    meta = apply_execution_vote(rows, lambda db_id: db, EVAL)
    assert rows[0]["sql"] == "SELECT count(*) FROM pet" and rows[0]["raw"] == "r1" and rows[0]["selected"] == 1
    assert rows[1]["sql"] == "SELEC" and rows[1]["selected"] == 0
    assert meta["executions"] == 4 and meta["no_survivor"] == 1 and meta["changed"] == 1 and meta["seconds"] >= 0


@pytest.mark.parametrize("overrides", [
    ["generate.selection=execution_vote"],
    ["generate.selection=execution_vote", "generate.temperature=0.8"],  # one candidate
    ["generate.selection=execution_vote", "generate.num_candidates=1", "generate.temperature=0.8"],
])
def test_execution_vote_needs_sampled_candidates(overrides) -> None:
    with pytest.raises(ConfigError, match="selection=execution_vote") as err:
        load_config(None, overrides)
    assert "\n" not in str(err.value)


@pytest.mark.slow  # starts Ray and a tiny model
def test_generate_with_execution_vote_on_the_validation_split(tmp_path) -> None:
    import ray

    from sqltrain.evaluate.predictions import read_predictions
    from sqltrain.generate.pipeline import run_generate

    tiny = ["model.name=random:tiny", "model.gradient_checkpointing=false", "quantization.method=none",
            "linking.format=compact", "linking.token_budget=256", "prompt.max_seq_len=384",
            "generate.max_new_tokens=12", "generate.batch_size=4"]
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", *tiny, "data.validation.fraction=0.2",
                             "generate.limit=3", "generate.num_candidates=3", "generate.temperature=1.0",
                             "generate.selection=execution_vote",
                             "evaluate.parallel_threshold=0"])  # the Ray-task path of the vote
    try:
        result = run_generate(cfg, split="validation")
    finally:
        ray.shutdown()
    assert result.predictions == Path(cfg.run_dir) / "predictions" / "base-validation.jsonl"
    rows = read_jsonl(result.predictions)
    assert len(rows) == 3 == len(read_predictions(result.predictions))
    for r in rows:
        assert len(r["candidates"]) == 3 and r["sql"] == r["candidates"][r["selected"]]["sql"]
    meta = json.loads(result.meta.read_text())
    assert meta["selection"] == "execution_vote" and meta["split"] == "validation"
    assert meta["vote"]["n"] == 3 and meta["vote"]["seconds"] >= 0
    assert 3 <= meta["vote"]["executions"] <= 9
