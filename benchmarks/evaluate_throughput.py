"""Throughput of `sqltrain evaluate` in its two regimes (results go to docs/benchmarks.md).

small: full Spider dev gold-vs-gold end to end, the CLI in a fresh interpreter (import, load,
       execute 2 x 1026 queries, exact match, write outputs): wall and CPU seconds, median of
       --repeat (CPU time is what a busy shared machine cannot inflate much).
large: dev x --sets prediction sets scored on Ray with 1, 2, ... workers (tasks in flight):
       executions/s and predictions/s per worker count, plus the serial in-process rate.
       Set k keeps each gold query with probability 1/2 and otherwise takes the gold query of
       another example on the same database, so about half the predictions are wrong, as in
       real model output; trailing spaces make every SQL string distinct, so no parse cache
       helps across sets or runs. Each worker count gets fresh Ray workers.

    python benchmarks/evaluate_throughput.py small --spider-dir ../shared/spider
    python benchmarks/evaluate_throughput.py large --spider-dir ../shared/spider --sets 20 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_small(spider_dir: Path, repeat: int) -> dict:
    exclude = spider_dir / "database" / "KNOWN_GAPS.tsv"
    times, cpu, summary = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "sqltrain.cli", "evaluate", "--spider-dir", str(spider_dir), "--split", "dev",
               "--predictions", str(spider_dir / "dev_gold.sql"), "--out", tmp, "--exclude", str(exclude),
               "--no-progress"]
        for _ in range(repeat):
            cpu0, start = _children_cpu(), time.perf_counter()
            subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
            cpu.append(_children_cpu() - cpu0)
            summary = json.loads((Path(tmp) / "summary.json").read_text())
    return {"regime": "small", "command": " ".join(["sqltrain", *cmd[3:]]).replace(tmp, "OUT"),
            "wall_s": [round(t, 3) for t in times], "median_wall_s": round(statistics.median(times), 3),
            "cpu_s": [round(t, 3) for t in cpu], "median_cpu_s": round(statistics.median(cpu), 3),
            "n": summary["n"], "ex": summary["ex"], "exact_match": summary["exact_match"]}


def prediction_sets(bench, n_sets: int, salt: int = 0) -> list:
    """Items for n_sets perturbed copies of dev (see the module docstring).

    `salt` shifts the trailing spaces of gold and predicted SQL alike: runs with different salts
    share no SQL string, so no parse or result cache carries over from one run to the next.
    """
    from sqltrain.evaluate.runner import Item

    examples = bench.examples("dev")
    by_db: dict[str, list[str]] = {}
    for ex in examples:
        by_db.setdefault(ex.db_id, []).append(ex.query)
    rng = random.Random(0)
    items = []
    for k in range(n_sets):
        pad = " " * (salt * n_sets + k)
        for ex in examples:
            pred = ex.query if rng.random() < 0.5 else rng.choice(by_db[ex.db_id])
            items.append(Item(k * 100_000 + ex.index, ex.db_id, ex.query + " " * salt, pred + pad))
    return items


def _timed(items, bench, cfg, mode: str) -> dict:
    from sqltrain.evaluate.runner import score_items

    start = time.perf_counter()
    records = score_items(items, bench, cfg, progress=False, force=mode)
    seconds = time.perf_counter() - start
    executions = sum(r["executions"] for r in records)
    return {"seconds": round(seconds, 2), "predictions": len(records), "executions": executions,
            "executions_per_s": round(executions / seconds, 1), "predictions_per_s": round(len(records) / seconds, 1),
            "ex": round(sum(r["correct"] for r in records) / len(records), 4)}


def bench_large(spider_dir: Path, n_sets: int, workers: list[int]) -> dict:
    import ray

    from sqltrain.config import EvaluateConfig
    from sqltrain.spider.benchmark import SpiderBenchmark

    bench = SpiderBenchmark(spider_dir)
    out = {"regime": "large", "sets": n_sets, "cpus": os.cpu_count(),
           "serial": _timed(prediction_sets(bench, n_sets, salt=0), bench, EvaluateConfig(), "serial"), "ray": {}}
    # Ray renices its workers by +15 by default; on a dedicated cluster that changes nothing, on a
    # shared machine it would compare niced Ray workers with the un-niced serial path.
    os.environ.setdefault("RAY_worker_niceness", "0")
    for run, n in enumerate(workers, start=1):
        cfg = EvaluateConfig(num_workers=n)
        ray.init(num_cpus=max(workers), log_to_driver=False, configure_logging=False)  # fresh workers
        try:
            # warm-up on other strings: start the worker processes and import sqltrain/sqlglot there
            _timed(prediction_sets(bench, 1, salt=100 + run)[: 300 * n], bench, cfg, "ray")
            out["ray"][n] = _timed(prediction_sets(bench, n_sets, salt=run), bench, cfg, "ray")
        finally:
            ray.shutdown()
    base = out["ray"][workers[0]]["executions_per_s"] / workers[0]
    out["scaling"] = {n: round(r["executions_per_s"] / (base * n), 3) for n, r in out["ray"].items()}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("regime", choices=["small", "large"])
    p.add_argument("--spider-dir", type=Path, default=REPO.parent / "shared" / "spider")
    p.add_argument("--repeat", type=int, default=5, help="small: runs (the median is reported)")
    p.add_argument("--sets", type=int, default=20, help="large: prediction sets of dev")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="large: worker counts to compare")
    args = p.parse_args()
    if args.regime == "small":
        result = bench_small(args.spider_dir, args.repeat)
    else:
        result = bench_large(args.spider_dir, args.sets, args.workers)
    result.update(date=time.strftime("%Y-%m-%d"), load_avg_1m=round(os.getloadavg()[0], 2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
