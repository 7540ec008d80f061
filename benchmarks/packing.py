"""Padding in real micro batches, and what padding-free batches (train.packing) save.

1. Padding share, from prepared shards (`sqltrain prepare` output, {run_dir}/data): the train
   split cut into micro batches exactly as training does (sqltrain.train.data.length_grouped:
   windows of 32 micro batches sorted by length, shuffled), and, for reference, in arrival order
   without grouping. padding share = 1 - real tokens / (micro batch size x longest row), summed
   over an epoch; "packed elements" is the tensor size train.packing feeds the model under sdpa
   (rows capped at the micro batch's longest example) relative to the padded batches.
2. --time: forward + backward tokens/s of a model on the first micro batches, padded vs packed
   (sdpa: capped rows; flash_attention_*: one row, where the model supports it), counting only
   real tokens ("useful tokens/s"), on the first CUDA GPU when there is one (bf16), else on CPU.
   The token ids are taken modulo the model's vocabulary, so a tiny random model gives a CPU
   smoke figure on the real lengths; on CPU it says nothing about GPU speed.

    python benchmarks/packing.py runs/qwen2.5-coder-0.5b-spider/data --micro 4,8,16,32
    python benchmarks/packing.py runs/qwen2.5-coder-0.5b-spider/data --micro 16 --time --model random:tiny
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="a prepared {run_dir}/data directory")
    p.add_argument("--split", default="train")
    p.add_argument("--micro", default="16", help="micro batch sizes, e.g. 4,8,16")
    p.add_argument("--seed", type=int, default=42, help="train.seed (the grouping's shuffle)")
    p.add_argument("--time", action="store_true", help="also time padded vs packed forward+backward")
    p.add_argument("--model", default="random:tiny", help="model.name for --time")
    p.add_argument("--attn", default="sdpa", help="model.attn_implementation for --time")
    p.add_argument("--batches", type=int, default=6, help="micro batches timed (after one untimed)")
    p.add_argument("--cache-dir", default="~/.cache/sqltrain/models")
    p.add_argument("--out", help="write the results as JSON here")
    return p.parse_args(argv)


def load_rows(data: Path, split: str) -> list[tuple]:
    import pyarrow.parquet as pq

    rows = []
    for f in sorted((data / split).glob("*.parquet")):
        t = pq.read_table(f, columns=["input_ids", "labels"])
        rows += list(zip(t.column("input_ids").to_numpy(zero_copy_only=False),
                         t.column("labels").to_numpy(zero_copy_only=False)))
    return rows


def padding(groups: list[list]) -> dict:
    from sqltrain.train.data import pack_batch

    real = sum(len(r[0]) for g in groups for r in g)
    padded = sum(len(g) * max(len(r[0]) for r in g) for g in groups)
    packed = sum(pack_batch(g, max_row_tokens=max(len(r[0]) for r in g))["input_ids"].numel() for g in groups)
    return {"micro_batches": len(groups), "real_tokens": real, "padded_elements": padded,
            "padding_share": 1 - real / padded, "packed_elements_vs_padded": packed / padded}


def shares(rows: list[tuple], micro: int, seed: int) -> dict:
    from sqltrain.train.data import length_grouped

    grouped = list(length_grouped(rows, micro, random.Random(seed)))
    arrival = [rows[i:i + micro] for i in range(0, len(rows) - micro + 1, micro)]
    return {"micro_batch_size": micro, "grouped (as trained)": padding(grouped), "arrival order": padding(arrival)}


def time_layouts(args, rows: list[tuple], micro: int) -> dict:
    """Useful tokens/s of forward+backward, padded vs packed, on the first grouped micro batches."""
    import numpy as np
    import torch

    from sqltrain.config import load_config
    from sqltrain.model.loading import attach_lora, load_base_model
    from sqltrain.train.data import collator, length_grouped

    cuda = torch.cuda.is_available()
    cfg = load_config(None, [f"model.name={args.model}", "quantization.method=none", "model.gradient_checkpointing=false",
                             f"model.attn_implementation={args.attn}", f"model.cache_dir={args.cache_dir}", "lora.dropout=0.0",
                             f"model.dtype={'bf16' if cuda else 'fp32'}"])
    device = torch.device("cuda", 0) if cuda else None
    model = attach_lora(load_base_model(cfg, device_map={"": 0} if cuda else None), cfg)
    vocab = model.config.vocab_size
    groups = list(length_grouped(rows, micro, random.Random(args.seed)))[: args.batches + 1]
    groups = [[(ids % vocab, np.where(lab >= 0, lab % vocab, lab)) for ids, lab in g] for g in groups]
    layouts = {"padded": collator(False, args.attn), "packed": collator(True, args.attn)}
    seconds = {name: [] for name in layouts}
    tokens = 0
    for i, g in enumerate(groups):
        # Both layouts of one micro batch back to back, in alternating order: on a shared
        # machine the load drifts, and this way both see the same drift.
        for name in sorted(layouts, reverse=bool(i % 2)):
            batch = layouts[name](g, device)
            started = time.perf_counter()
            model(**batch).loss.backward()
            if cuda:
                torch.cuda.synchronize()
            if i:  # the first micro batch warms up
                seconds[name].append(time.perf_counter() - started)
        tokens += sum(len(r[0]) for r in g) if i else 0
    out = {name: {"useful_tokens_per_s": tokens / sum(s), "median_step_s": statistics.median(s)}
           for name, s in seconds.items()}
    out["packed_vs_padded"] = out["packed"]["useful_tokens_per_s"] / out["padded"]["useful_tokens_per_s"]
    where = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} threads"
    return {"model": args.model, "attn": args.attn, "device": where, **out}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    rows = load_rows(Path(args.data), args.split)
    lengths = [len(r[0]) for r in rows]
    result = {"data": str(Path(args.data).absolute()), "split": args.split, "rows": len(rows),
              "length": {"mean": statistics.mean(lengths), "p50": statistics.median(lengths), "max": max(lengths)},
              "date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", "benchmarks/packing.py", *argv]),
              "micro_batches": [shares(rows, int(m), args.seed) for m in args.micro.split(",")]}
    if args.time:
        result["timing"] = time_layouts(args, rows, int(args.micro.split(",")[0]))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
