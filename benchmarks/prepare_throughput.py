"""Throughput of the prepare stage: link + render + tokenize a whole Spider split on Ray Data.

    python benchmarks/prepare_throughput.py --config configs/smollm2-spider.yaml data.exclude=null

Measures, in this order:
1. value index build from a fresh cache directory (every database of the split), then a
   warm load of the same indexes (what later runs pay);
2. Ray start (skipped when Ray is already up);
3. the Ray Data stage exactly as `sqltrain prepare` runs it (`prepare_dataset`: actor pool,
   tokenizer load per actor, link, render, tokenize, materialize) -- the headline number;
4. with --in-process, the same records built in this process without Ray (one core), with
   the CPU seconds they took (a figure that a busy machine does not inflate).
Results go to stdout as JSON; docs/benchmarks.md records them with date, device and command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqltrain.config import load_config  # noqa: E402
from sqltrain.data import resolve_benchmark  # noqa: E402
from sqltrain.prep.pipeline import build_value_indexes, load_examples, prepare_dataset  # noqa: E402
from sqltrain.raycluster import ensure_ray  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def in_process_rate(cfg, bench, examples) -> dict:
    from sqltrain.model.loading import load_tokenizer
    from sqltrain.prep.records import RecordBuilder

    builder, load_s = timed(lambda: RecordBuilder(cfg, bench, load_tokenizer(cfg.model)))
    cpu = time.process_time()
    records, seconds = timed(lambda: [builder.record(e) for e in examples])
    cpu = time.process_time() - cpu  # CPU seconds: what a busy machine does not inflate
    return {"tokenizer_load_s": round(load_s, 2), "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
            "examples_per_s": round(len(records) / seconds, 1), "cpu_ms_per_example": round(1000 * cpu / len(records), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/smollm2-spider.yaml")
    parser.add_argument("--split", default="train")
    parser.add_argument("--in-process", action="store_true", help="also time a single process without Ray")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="sqltrain-bench-index-")  # cold index build every run
    cfg = load_config(args.config, [*args.overrides, f"linking.cache_dir={cache}"])
    bench = resolve_benchmark(cfg.data)
    examples = load_examples(bench, cfg, args.split)
    db_ids = {e.db_id for e in examples}
    cold = build_value_indexes(bench, cfg, db_ids)
    warm = build_value_indexes(bench, cfg, db_ids)
    _, ray_start = timed(lambda: ensure_ray(cfg.cluster.address, cfg.cluster.runtime_env))
    ds, seconds = timed(lambda: prepare_dataset(cfg, bench, {args.split: examples}))
    import pyarrow as pa
    import ray

    kept = pa.concat_tables(ray.get(ds.to_arrow_refs()))["dropped"].null_count  # no drop reason = kept
    result = {
        "split": args.split,
        "examples": len(examples),
        "dropped": len(examples) - kept,
        "databases": len(db_ids),
        "value_index_build_s": round(cold, 2),
        "value_index_load_s": round(warm, 2),
        "ray_start_s": round(ray_start, 2),
        "prepare_s": round(seconds, 2),
        "examples_per_s": round(len(examples) / seconds, 1),
        "format": cfg.linking.format,
        "token_budget": cfg.linking.token_budget,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if args.in_process:
        result["in_process"] = in_process_rate(cfg, bench, examples)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
