"""Execution-guided self-consistency (generate.selection=execution_vote).

Each question's sampled candidates run in the evaluation sandbox on its database, in the
sandbox's child process with its hard deadline and memory cap (sqltrain.evaluate.isolated;
untrusted SQL never runs anywhere else). Candidates that fail (syntax, runtime, timeout,
denied, too large) are dropped; the rest are grouped by result: two candidates agree when
their results match as evaluation compares them (sqltrain.evaluate.result_match: a bag of rows
up to a column permutation), in row order only when both have a top-level ORDER BY. A
candidate joins the first group whose first member it agrees with, so the grouping is
deterministic. The largest group wins; groups of equal size are ranked by their best member's
sequence log-probability (both engines report one for every candidate), then by which came
first. The winning group's most probable member becomes the prediction. When no candidate
runs, the first candidate is kept (with sampling there is no greedy answer to fall back on).

Executions are grouped by database (a database is opened once per group) and run in this
process below evaluate.parallel_threshold executions, else as one Ray task per chunk of a
database's questions.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqltrain.config import EvaluateConfig
from sqltrain.evaluate.result_match import has_top_level_order_by, results_match
from sqltrain.evaluate.sandbox import ExecResult

CHUNKS_PER_WORKER = 4
"""Ray tasks per worker slot, as in the evaluator: evens out databases of unequal size."""


@dataclass(frozen=True)
class Vote:
    choice: int
    """Index of the chosen candidate."""
    survivors: int
    """Candidates that executed without error."""
    votes: int
    """Size of the winning group (0 when none survived)."""


def vote(sqls: Sequence[str], results: Sequence[ExecResult], logprobs: Sequence[float | None]) -> Vote:
    """Choose among one question's candidates from their execution results (see module doc)."""
    groups: list[list[int]] = []
    for i, res in enumerate(results):
        if not res.ok:
            continue
        for group in groups:
            first = group[0]
            ordered = has_top_level_order_by(sqls[first]) and has_top_level_order_by(sqls[i])
            if results_match(results[first].rows, res.rows, ordered):
                group.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return Vote(0, 0, 0)

    def lp(i: int) -> float:
        return -math.inf if logprobs[i] is None else float(logprobs[i])

    def best(group: list[int]) -> int:
        return max(group, key=lambda i: (lp(i), -i))  # most probable, then earliest

    winner = max(groups, key=lambda g: (len(g), lp(best(g)), -g[0]))
    return Vote(best(winner), sum(len(g) for g in groups), len(winner))


def vote_db(db_path: str, questions: list[tuple[int, list[str], list[float | None]]],
            timeout_s: float, max_rows: int) -> list[tuple[int, Vote, int]]:
    """Vote on each (key, candidate SQLs, log-probs) of one database: [(key, vote, executions)].

    Identical SQL texts of a question run once. Runs in a Ray task or in-process.
    """
    from sqltrain.evaluate.isolated import Job, shared_process

    proc, out = shared_process(), []
    for key, sqls, logprobs in questions:
        unique = list(dict.fromkeys(sqls))
        records = proc.score([db_path], [Job(k, None, sql) for k, sql in enumerate(unique)], timeout_s, max_rows)
        by_sql = {sql: rec["result"] for sql, rec in zip(unique, records)}
        out.append((key, vote(sqls, [by_sql[s] for s in sqls], logprobs), len(unique)))
    return out


def _chunks(by_db: dict[str, list], size: int) -> list[tuple[str, list]]:
    return [(db, qs[i:i + size]) for db, qs in by_db.items() for i in range(0, len(qs), size)]


def run_votes(by_db: dict[str, list[tuple[int, list[str], list[float | None]]]], eval_cfg: EvaluateConfig,
              ) -> list[tuple[int, Vote, int]]:
    """vote_db over every database: in-process for small jobs, else Ray tasks (Ray is running:
    generation started it)."""
    executions = sum(len(sqls) for qs in by_db.values() for _, sqls, _ in qs)
    if executions < eval_cfg.parallel_threshold:
        return [r for db, qs in by_db.items() for r in vote_db(db, qs, eval_cfg.timeout_s, eval_cfg.max_rows)]
    import ray

    workers = eval_cfg.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    questions = sum(len(qs) for qs in by_db.values())
    size = max(1, math.ceil(questions / (workers * CHUNKS_PER_WORKER)))
    task = ray.remote(num_cpus=1, max_retries=2)(vote_db)
    refs = [task.remote(db, qs, eval_cfg.timeout_s, eval_cfg.max_rows) for db, qs in _chunks(by_db, size)]
    return [r for chunk in ray.get(refs) for r in chunk]


def apply_execution_vote(rows: list[dict[str, Any]], db_path, eval_cfg: EvaluateConfig) -> dict[str, Any]:
    """Set each generated row's sql/raw to its voted candidate (in place; `selected` = its index)
    and return the meta file's account of the vote. `db_path(db_id)` names a question's database."""
    start = time.perf_counter()
    by_db: dict[str, list] = defaultdict(list)
    for key, row in enumerate(rows):
        cands = list(row["candidates"])
        by_db[str(db_path(str(row["db_id"])))].append(
            (key, [str(c["sql"]) for c in cands], [number_or_none(c["logprob"]) for c in cands]))
    results = run_votes(by_db, eval_cfg)
    for key, choice, _ in results:
        chosen = list(rows[key]["candidates"])[choice.choice]
        rows[key].update(sql=chosen["sql"], raw=chosen["raw"], selected=choice.choice)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "executions": sum(n for _, _, n in results),
        "no_survivor": sum(v.survivors == 0 for _, v, _ in results),
        "changed": sum(v.choice != 0 for _, v, _ in results),
        "mean_winning_votes": round(sum(v.votes for _, v, _ in results) / max(1, len(results)), 3),
    }


def number_or_none(value) -> float | None:
    """A float, or None for a missing one (Arrow -> pandas may turn None into NaN)."""
    return None if value is None or value != value else float(value)
