"""Score predictions: execute predicted and gold SQL in the sandbox, compare, summarize.

Work is grouped by database: one group (or chunk of a large group) opens each of its database's
variants once and executes its gold queries once each (items are sorted by gold SQL, so the
cached gold result is simply the previous one). Small jobs run serially in this process, since
starting Ray costs seconds while a whole Spider dev gold-vs-gold run takes about one; large jobs
fan the groups out as Ray tasks. Tasks receive database paths, not data, so on a multi-node
cluster the Spider dir must be at the same path on every node (shared storage).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sqltrain.config import EvaluateConfig
from sqltrain.evaluate.result_match import has_top_level_order_by
from sqltrain.evaluate.metrics import summarize_eval
from sqltrain.evaluate.predictions import Prediction, PredictionsError, read_predictions, shown
from sqltrain.evaluate.records import EvalRecord, EvalSummary
from sqltrain.io import atomic_dir, check_replaceable

if TYPE_CHECKING:
    from sqltrain.config import Config
    from sqltrain.spider.validation import ValidationCarve
    from sqltrain.spider.benchmark import SpiderBenchmark
    from sqltrain.spider.schema import Schema

CHUNKS_PER_WORKER = 4
"""Ray tasks per worker slot: enough to even out databases of unequal size. More, smaller tasks
cost more than they balance (measured: 64-item tasks made dev x 20 40% slower on 2 workers)."""


@dataclass(frozen=True)
class Item:
    """One prediction to score against one gold query on one database."""

    key: int
    """The caller's handle for this item (results come back keyed by it)."""
    db_id: str
    gold: str
    pred: str


# -- scoring one database (runs in-process or as a Ray task) ------------------------------------------
def score_db(
    db_paths: list[str], items: list[Item], schema: Schema | None, timeout_s: float, max_rows: int
) -> list[dict[str, Any]]:
    """Score items of one database on all its variants; each gold query is executed once.

    Execution and comparison run in this process's query child (sqltrain.evaluate.isolated:
    killed at its hard deadline, capped in memory); exact match and hardness, which parse SQL
    with sqlglot, run here.
    """
    from sqltrain.evaluate.isolated import Job, shared_process

    ordered = sorted(items, key=lambda it: it.gold)  # the child reuses one gold result per run of equal golds
    jobs = [Job(it.key, it.gold, it.pred, has_top_level_order_by(it.gold)) for it in ordered]
    records = shared_process().score(db_paths, jobs, timeout_s, max_rows)
    for item, rec in zip(ordered, records):
        rec["exact_match"] = _exact_match(item.pred, item.gold, schema)
        rec["hardness"] = _hardness(item.gold)
    return records


def _exact_match(pred: str, gold: str, schema) -> bool:
    from sqltrain.evaluate.exact_match import exact_match

    try:
        return exact_match(pred, gold, schema)
    except ValueError:  # the gold query itself does not parse: nothing to match against
        return False


def _hardness(gold: str) -> str:
    from sqltrain.spider.hardness import hardness

    try:
        return hardness(gold)
    except ValueError:
        return "unknown"


# -- planning and running -----------------------------------------------------------------------
def plan_chunks(items: list[Item], max_chunk: int) -> list[list[Item]]:
    """Group items by database; split big groups at gold-query boundaries into <= max_chunk items."""
    by_db: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_db[it.db_id].append(it)
    chunks = []
    for db_items in by_db.values():
        db_items.sort(key=lambda it: it.gold)
        chunk: list[Item] = []
        for it in db_items:
            if len(chunk) >= max_chunk and it.gold != chunk[-1].gold:
                chunks.append(chunk)
                chunk = []
            chunk.append(it)
        chunks.append(chunk)
    return sorted(chunks, key=len, reverse=True)  # biggest first: the tail of the run stays short


def score_items(
    items: list[Item],
    bench: SpiderBenchmark,
    eval_cfg: EvaluateConfig,
    *,
    address: str | None = None,
    progress: bool = True,
    force: str | None = None,
) -> list[dict[str, Any]]:
    """Score items; serial in-process below eval_cfg.parallel_threshold executions, else on Ray.

    `force` = "serial" or "ray" overrides the choice (benchmarks use it). Results come back in
    the order of `items`.
    """
    variants = {db: [str(p) for p in bench.db_variants(db)] for db in {it.db_id for it in items}}
    missing = sorted(db for db, paths in variants.items() if not paths)
    if missing:
        from sqltrain.spider.benchmark import SpiderFormatError

        raise SpiderFormatError(
            f"{bench.root}: no database file for {', '.join(missing)} "
            f"(expected {bench.db_path(missing[0])}); exclude those examples with --exclude",
            "missing database file",
        )
    for paths in variants.values():  # a truncated, empty or non-SQLite file is an input error, not N failures
        for p in paths:
            bench.check_database(Path(p))
    executions = sum(2 * len(variants[it.db_id]) for it in items)
    mode = force or ("ray" if executions >= eval_cfg.parallel_threshold else "serial")
    bar = _progress_bar(len(items), progress)
    try:
        run = _run_ray if mode == "ray" else _run_serial
        results = run(items, bench, variants, eval_cfg, bar, address)
    finally:
        bar.close()
    by_key = {r["key"]: r for r in results}
    return [by_key[it.key] for it in items]


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="evaluate", unit="q", disable=not enabled, mininterval=0.5)


def _run_serial(items, bench, variants, eval_cfg, bar, _address) -> list[dict[str, Any]]:
    out = []
    for chunk in plan_chunks(items, max_chunk=len(items)):
        db = chunk[0].db_id
        out += score_db(variants[db], chunk, bench.schemas.get(db), eval_cfg.timeout_s, eval_cfg.max_rows)
        bar.update(len(chunk))
    return out


def _run_ray(items, bench, variants, eval_cfg, bar, address) -> list[dict[str, Any]]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        from sqltrain.raycluster import ensure_ray

        ensure_ray(address, log_to_driver=False, configure_logging=False)
    from sqltrain.raycluster import check_shared  # tasks on any node open the databases
    check_shared({"the databases": [p for paths in variants.values() for p in paths]})
    try:
        workers = eval_cfg.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        chunks = plan_chunks(items, max_chunk=max(1, math.ceil(len(items) / (workers * CHUNKS_PER_WORKER))))
        task = ray.remote(num_cpus=1, max_retries=2)(score_db)
        # Without a worker limit every task is submitted at once and Ray's scheduler keeps all
        # CPUs busy; with one, at most that many are in flight (a worker waits one round trip).
        in_flight = eval_cfg.num_workers or len(chunks)
        todo, pending, out = list(chunks), {}, []
        while todo or pending:
            while todo and len(pending) < in_flight:
                chunk = todo.pop(0)
                db = chunk[0].db_id
                ref = task.remote(variants[db], chunk, bench.schemas.get(db), eval_cfg.timeout_s, eval_cfg.max_rows)
                pending[ref] = len(chunk)
            done, _ = ray.wait(list(pending), num_returns=1)
            out += ray.get(done[0])
            bar.update(pending.pop(done[0]))
        return out
    finally:
        if started_here:
            ray.shutdown()


# -- a whole evaluation: predictions file in, summary + records out ---------------------------------
def build_items(
    bench: SpiderBenchmark, split: str, predictions: list[Prediction], exclude=None, source: str = "predictions"
) -> tuple[list[Item], dict[int, Any], int]:
    """Pair predictions with the split's examples by index.

    Returns (items, examples by index, number of non-excluded examples without a prediction).
    Predictions for excluded examples are dropped; an index outside the split or a db_id that
    disagrees with the example is an error naming the line.
    """
    all_examples = bench.examples(split, check_db=False)
    in_split = {ex.index for ex in all_examples}
    kept = {ex.index: ex for ex in bench.examples(split, exclude=exclude, check_db=False)}
    items = []
    for p in predictions:
        if p.index not in in_split:
            raise PredictionsError(
                f"{source}: line {p.line}: index {p.index} is not an example of split '{split}' "
                f"({len(all_examples)} examples)"
            )
        ex = kept.get(p.index)
        if ex is None:
            continue  # excluded
        if p.db_id is not None and p.db_id != ex.db_id:
            raise PredictionsError(
                f"{source}: line {p.line}: db_id {shown(p.db_id)} but {split} example {p.index} is on '{ex.db_id}'"
            )
        items.append(Item(p.index, ex.db_id, ex.query, p.sql))
    missing = len(set(kept) - {it.key for it in items})
    return items, kept, missing


def evaluate_predictions(
    bench: SpiderBenchmark,
    split: str,
    predictions: list[Prediction],
    eval_cfg: EvaluateConfig,
    *,
    exclude=None,
    address: str | None = None,
    progress: bool = True,
    source: str = "predictions",
) -> tuple[list[EvalRecord], EvalSummary]:
    """Score one prediction set on a split; returns (records, summary)."""
    start = time.perf_counter()
    items, examples, missing = build_items(bench, split, predictions, exclude, source)
    scored = score_items(items, bench, eval_cfg, address=address, progress=progress)
    records = [_record(examples[it.key], it, r) for it, r in zip(items, scored)]
    summary = summarize_eval(records, time.perf_counter() - start, split=split, missing=missing)
    return records, summary


def _record(ex, item: Item, scored: dict[str, Any]) -> EvalRecord:
    """The record of one scored item: the example, then what scoring found (less its key)."""
    outcome = {k: v for k, v in scored.items() if k not in ("key", "hardness")}
    return EvalRecord(index=ex.index, id=ex.id, db_id=ex.db_id, hardness=scored["hardness"], question=ex.question,
                      gold=item.gold, pred=item.pred, **outcome)


def evaluate_file(
    spider_dir: str | os.PathLike,
    split: str,
    predictions_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    eval_cfg: EvaluateConfig,
    *,
    exclude: str | os.PathLike | None = None,
    address: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    validation: ValidationCarve | None = None,
) -> EvalSummary:
    """Evaluate a predictions file and write {out_dir}/records.jsonl and summary.json.

    The pair is written into a temp dir that then replaces out_dir whole, so a summary never
    sits beside another run's records (summary.json also names its records' sha256). out_dir
    must be absent, empty or an earlier evaluation (checked before any work). `spider_dir` may
    be "mini" for the embedded mini benchmark; `validation` is the carve that defines split
    "validation" (sqltrain.data.validation_carve). Returns the summary.
    """
    from sqltrain.data import benchmark_root
    from sqltrain.spider.benchmark import SpiderBenchmark
    from sqltrain.spider.validation import ValidationCarve

    out = Path(out_dir)
    check_replaceable(out, _is_evaluation, what="evaluation output")
    bench = SpiderBenchmark(benchmark_root(str(spider_dir)), validation=validation or ValidationCarve())
    predictions = read_predictions(predictions_path)
    records, summary = evaluate_predictions(
        bench, split, predictions, eval_cfg, exclude=exclude, address=address, progress=progress,
        source=str(predictions_path),
    )
    records_text = "".join(json.dumps(_json_safe(r.to_json()), ensure_ascii=False) + "\n" for r in records)
    summary = summary.model_copy(update=dict(
        predictions=str(Path(predictions_path).absolute()), spider_dir=str(bench.root),
        exclude=str(Path(exclude).absolute()) if exclude else None, timeout_s=eval_cfg.timeout_s,
        records_sha256=hashlib.sha256(records_text.encode()).hexdigest()))
    with atomic_dir(out, legacy=_is_evaluation) as tmp:
        (tmp / "records.jsonl").write_text(records_text, encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    if log is not None and summary.missing:
        log(f"warning: {summary.missing} examples of '{split}' have no prediction and were not scored")
    return summary


def _is_evaluation(path: Path) -> bool:
    """An evaluation dir written before the output marker: nothing but summary and records."""
    return {p.name for p in path.iterdir()} <= {"summary.json", "records.jsonl"}


def run_evaluate(
    cfg: Config, predictions_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
    split: str | None = None, progress: bool = True,
) -> EvalSummary:
    """The evaluate stage: evaluate_file with everything else from the config (data, evaluate and
    cluster sections); out_dir defaults to {run_dir}/eval/<predictions file stem>."""
    from sqltrain.data import validation_carve

    out = out_dir if out_dir is not None else Path(cfg.run_dir) / "eval" / Path(predictions_path).stem
    return evaluate_file(
        cfg.data.spider_dir, split or cfg.data.eval_split, predictions_path, out, cfg.evaluate,
        exclude=cfg.data.exclude, address=cfg.cluster.address, progress=progress,
        validation=validation_carve(cfg.data),
    )


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    # Predictions read from non-UTF-8 bytes hold lone surrogates, which JSON encoders reject.
    def fix(v):
        return v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v

    return {k: fix(v) for k, v in record.items()}
