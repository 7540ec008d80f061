"""Rebuild the micro batches that a one-worker `sqltrain train` run trained on at given steps,
from the run's shards alone (no GPU, no Ray), and save them where the worker saves the batches
of skipped steps, so that `benchmarks/diagnose_nonfinite.py RUN_DIR` can replay them.

The worker reads the train shards in file order (Ray Data with preserve_order), groups rows of
similar length into micro batches inside windows, shuffled with `train.seed + epoch`
(sqltrain.train.data.length_grouped), and pads them (pad_batch); step N of epoch e is micro
batch N of that order (grad_accum 1). This script runs the same functions, so on a run whose
log named its skipped steps, the rebuilt batches are the ones that were skipped (checked on the
2026-12-07 seed-2 Spider run: steps 359, 395, 483 rebuilt as 16 x 448, 16 x 320, 16 x 448, as
logged). One worker, no shuffle buffer, no packing: other runs are refused.

    python benchmarks/rebuild_batches.py --config configs/qwen2.5-coder-0.5b-spider.yaml \
        --steps 359,395,483 train.seed=2 [run_dir=...]      # the run's config and overrides
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rebuild(run_dir: str, steps: list[int], seed: int, micro_batch_size: int, multiple: int = 1) -> dict[int, dict]:
    """{step: padded micro batch} for a one-worker run over run_dir's train shards."""
    import pyarrow.parquet as pq

    from sqltrain.train.data import inspect_split, length_grouped, pad_batch

    rows = []
    for f in inspect_split(run_dir, "train").files:
        table = pq.read_table(f, columns=["input_ids", "labels"])
        rows += zip(table.column("input_ids").to_pylist(), table.column("labels").to_pylist())
    per_epoch = len(rows) // micro_batch_size
    out = {}
    for epoch in sorted({(s - 1) // per_epoch for s in steps}):
        groups = list(length_grouped(iter(rows), micro_batch_size, random.Random(seed + epoch)))[:per_epoch]
        out |= {s: pad_batch(groups[(s - 1) % per_epoch], multiple=multiple) for s in steps if (s - 1) // per_epoch == epoch}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the run's config (its run_dir holds the prepared shards)")
    p.add_argument("--steps", required=True, help="comma-separated steps (1-based, as the training log names them)")
    p.add_argument("overrides", nargs="*", help="the run's key=value overrides, e.g. train.seed=2")
    args = p.parse_intermixed_args(argv)
    import torch

    from sqltrain.config import load_config

    cfg = load_config(args.config, args.overrides)
    t = cfg.train
    if t.num_workers != 1 or t.shuffle_buffer or t.packing or t.grad_accum != 1:
        p.error("only one-worker runs without shuffle_buffer, packing or grad_accum can be rebuilt")
    steps = [int(s) for s in args.steps.split(",")]
    out = Path(cfg.run_dir) / "train" / "nonfinite"
    out.mkdir(parents=True, exist_ok=True)
    for step, batch in rebuild(cfg.run_dir, steps, t.seed, t.micro_batch_size, t.pad_to_multiple_of).items():
        torch.save([batch], out / f"step-{step}-rank-0.pt")
        print(f"step {step}: {tuple(batch['input_ids'].shape)} -> {out / f'step-{step}-rank-0.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
