"""What train.sdpa_cudnn=false + train.pad_to_multiple_of=8 cost per training step against the old
defaults (cuDNN attention allowed, no extra padding), measured in one process on one engine:
blocks of steps in each arm, interleaved (ABBA), as benchmarks/guard_overhead.py does for the
guard (its harness is reused: same engine, same single-process world, same summary).

The batches are what padded Spider batches look like: `--batch` rows of random lengths between
`--min-seq` and `--seq` tokens, right-padded with a mask, a fixed cycle of `--cycle` batches
seen by both arms alike. Arm A pads to the longest row and lets SDPA choose cuDNN; arm B turns
cuDNN off (`torch.backends.cuda.enable_cudnn_sdp`, what the worker does per process) and pads to a
multiple of 8, so the memory-efficient kernel takes the mask.

Eager (train.compile=false): a compiled region bakes the SDPA backend chosen when it was traced,
so flipping the flag between blocks would not switch kernels there. The attention kernels are the
same fused kernels either way; the figure is the difference they make, not a compiled step time.

overhead = median(step, arm B) / median(step, arm A) - 1 (positive: the fix is slower).

GPU host, from the repo root:
    python benchmarks/attention_ab.py --model random:qwen2.5-0.5b --batch 16 --seq 512 model.tokenizer=DIR
Record the result in docs/benchmarks.md with the device, date and command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guard_overhead  # noqa: E402  (the shared harness: config, engine world, timing, summary)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random:qwen2.5-0.5b")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=512, help="longest row")
    p.add_argument("--min-seq", type=int, default=256, help="shortest row")
    p.add_argument("--cycle", type=int, default=8, help="distinct batches, cycled through in every block")
    p.add_argument("--pairs", type=int, default=10, help="(A, B) block pairs, in ABBA order")
    p.add_argument("--block", type=int, default=8, help="optimizer steps per block")
    p.add_argument("--warmup", type=int, default=8, help="untimed steps first, both arms")
    p.add_argument("--cpu", action="store_true", help="run on CPU (smoke test only: no cuDNN there)")
    p.add_argument("--cache-dir", default="~/.cache/sqltrain/models")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("overrides", nargs="*", help="sqltrain config overrides")
    return p.parse_args(argv)


def batches(args, device, multiple: int) -> list[dict]:
    """The cycle of padded batches (same rows in both arms; only the padding multiple differs)."""
    import torch

    from sqltrain.train.data import pad_batch

    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(args.cycle):
        lengths = torch.randint(args.min_seq, args.seq + 1, (args.batch,), generator=g).tolist()
        rows = [(ids, ids) for ids in (torch.randint(1, 32000, (n,), generator=g).tolist() for n in lengths)]
        out.append(pad_batch(rows, device, multiple))
    return out


def measure(args) -> dict:
    import tempfile

    import torch

    from sqltrain.train.worker import build_engine

    device = torch.device("cpu") if args.cpu else torch.device("cuda", 0)
    sync = (lambda: None) if args.cpu else torch.cuda.synchronize
    guard_overhead.init_single_process()
    with tempfile.TemporaryDirectory(prefix="sqltrain-attn-") as d:
        ns = argparse.Namespace(**{**vars(args), "overrides": ["train.compile=false", *args.overrides]})
        cfg = guard_overhead.make_config(ns, d)
        engine = build_engine(cfg, device, cfg.train.max_steps, 1)
    arms = {"A": (True, batches(args, device, 1)), "B": (False, batches(args, device, 8))}

    def run(arm: str, n: int) -> float:
        cudnn, cycle = arms[arm]
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        return guard_overhead.run_steps(engine, cycle, n, sync)

    for arm in arms:
        run(arm, max(1, args.warmup // 2))
    times: dict[str, list[float]] = {"A": [], "B": []}
    for arm in guard_overhead.abba(args.pairs, "A", "B"):
        times[arm].append(run(arm, args.block))
    s = guard_overhead.summarize(times["B"], times["A"])
    skipped = int(getattr(engine.optimizer, "skipped_steps", 0) or 0)
    return {"step_s_cudnn_pad1": s["step_s_off"], "step_s_nocudnn_pad8": s["step_s_on"],
            "overhead": s["overhead"], "paired_overhead_mean": s["paired_overhead_mean"],
            "paired_overhead_sem": s["paired_overhead_sem"], "blocks_cudnn_pad1": times["A"],
            "blocks_nocudnn_pad8": times["B"], "engine_skipped_steps": skipped,
            "device": "cpu" if args.cpu else torch.cuda.get_device_name(0), "model": args.model,
            "batch": args.batch, "seq": [args.min_seq, args.seq], "block": args.block, "pairs": args.pairs,
            "mean_rows_tokens": statistics.fmean(int(b["attention_mask"].sum()) for b in arms["A"][1])}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    r = measure(args) | {"date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", __file__, *argv])}
    print(f"{r['device']}  {r['model']}  batch {r['batch']} x seq {r['seq'][0]}-{r['seq'][1]}: step "
          f"{r['step_s_cudnn_pad1'] * 1e3:.2f} ms (cuDNN allowed, pad 1) vs {r['step_s_nocudnn_pad8'] * 1e3:.2f} ms "
          f"(cuDNN off, pad 8): {r['overhead']:+.2%} (paired {r['paired_overhead_mean']:+.2%} "
          f"± {r['paired_overhead_sem']:.2%})")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
