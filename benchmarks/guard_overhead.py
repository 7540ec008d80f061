"""What the non-finite guard (train.skip_nonfinite) costs per optimizer step, measured in one
process on one engine: blocks of steps with the guard on and off, interleaved (on, off, off, on,
...), so clock drift, thermal state and allocator warm-up fall on both arms alike.

Why in-process: the guard adds one host sync per step (DeepSpeed tests the clip norm it already
computed with `bool(...)`), well under 1% of a step, while two whole `train_throughput.py` runs
differ by more than that from run to run (±15% seen on the same H100, the sign flipping between
sessions). Alternating blocks on one engine removes the between-run noise.

The engine is sqltrain's own (`sqltrain.train.worker.build_engine`: NF4 base + LoRA +
DeepSpeed ZeRO-2, regional torch.compile under train.compile=auto), in a single process with a
world of one (no Ray: the guard is a property of the DeepSpeed optimizer, not of Ray Train). The
rows are fixed-length random tokens; the model a random-init preset (as in train_throughput.py).

overhead = median(step time, guard on) / median(step time, guard off) - 1, over blocks;
the paired figure is the mean of the per-pair differences (each on block against its neighbour
off block) with its standard error.

GPU host, from the repo root:
    python benchmarks/guard_overhead.py --model random:qwen2.5-0.5b --batch 16 --seq 512 model.tokenizer=DIR
CPU (a smoke run, no meaningful timing): --model random:tiny --cpu quantization.method=none
Record the result in docs/benchmarks.md with the device, date and command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random:qwen2.5-0.5b")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--pairs", type=int, default=10, help="(on, off) block pairs, in ABBA order")
    p.add_argument("--block", type=int, default=10, help="optimizer steps per block")
    p.add_argument("--warmup", type=int, default=8, help="untimed steps first (compilation), both arms")
    p.add_argument("--profile-rounds", type=int, default=0,
                   help="also profile the GPU timeline: this many (on, off) rounds, ABBA, of --block steps each")
    p.add_argument("--cpu", action="store_true", help="run on CPU (smoke test only)")
    p.add_argument("--cache-dir", default="~/.cache/sqltrain/models")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("overrides", nargs="*", help="sqltrain config overrides")
    return p.parse_args(argv)


def make_config(args, run_dir: str):
    from train_throughput import base_config

    steps = args.warmup + 2 * args.pairs * args.block
    ns = argparse.Namespace(model=args.model, cache_dir=args.cache_dir, batch=args.batch, warmup=0, steps=steps,
                            overrides=([] if not args.cpu else ["train.use_gpu=false"]) + list(args.overrides))
    return base_config(ns, run_dir)


def set_guard(engine, on: bool) -> None:
    """Turn the guard on (as build_engine does with train.skip_nonfinite=true) or off (DeepSpeed's
    bf16 ZeRO-1/2 default: a non-finite norm goes unnoticed)."""
    from sqltrain.train.deepspeed_cfg import skip_nonfinite_steps

    engine.optimizer.check_grad_overflow = False
    if on:
        skip_nonfinite_steps(engine)


def init_single_process() -> None:
    import deepspeed

    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533", "RANK": "0", "LOCAL_RANK": "0",
                 "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}.items():
        os.environ.setdefault(k, v)
    deepspeed.init_distributed(dist_backend=None, verbose=False)


def random_batch(args, device, seed: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 32000, (args.batch, args.seq), generator=g)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": ids.to(device)}


def abba(rounds: int, first, second):
    """The two arms in ABBA order over `rounds` pairs: neither always goes first, so clock drift,
    thermal state and allocator warm-up fall on both alike."""
    for i in range(rounds):
        yield from ((first, second) if i % 2 == 0 else (second, first))


def run_steps(engine, batches: list[dict], n: int, sync) -> float:
    """Seconds per optimizer step over n steps, cycling through `batches` (the device drained
    before and after)."""
    sync()
    t = time.perf_counter()
    for i in range(n):
        loss = engine(**batches[i % len(batches)]).loss
        engine.backward(loss)
        engine.step()
    sync()
    return (time.perf_counter() - t) / n


def measure(args) -> dict:
    import torch

    from sqltrain.train.worker import build_engine, compile_enabled

    device = torch.device("cpu") if args.cpu else torch.device("cuda", 0)
    sync = (lambda: None) if args.cpu else torch.cuda.synchronize
    init_single_process()
    with tempfile.TemporaryDirectory(prefix="sqltrain-guard-") as d:
        cfg = make_config(args, d)
        engine = build_engine(cfg, device, cfg.train.max_steps, 1)
    batches = [random_batch(args, device, seed=0)]
    for on in (True, False):
        set_guard(engine, on)
        run_steps(engine, batches, max(1, args.warmup // 2), sync)
    times: dict[bool, list[float]] = {True: [], False: []}
    for on in abba(args.pairs, True, False):
        set_guard(engine, on)
        times[on].append(run_steps(engine, batches, args.block, sync))
    profiled = profile_arms(engine, batches, args, sync) if args.profile_rounds and not args.cpu else {}
    return summarize(times[True], times[False]) | profiled | {
        "device": "cpu" if args.cpu else torch.cuda.get_device_name(0), "model": args.model,
        "batch": args.batch, "seq": args.seq, "block": args.block, "pairs": args.pairs,
        "compile": compile_enabled(cfg),
    }


def busy_length(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: the time at least one kernel ran."""
    total, reached = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total


def gpu_timeline(engine, batches: list[dict], n: int, sync) -> tuple[float, float]:
    """(busy, idle) GPU microseconds per step over n steps, from the kernels' own timestamps.

    Why: the wall time of a step moves by 10-20% between blocks (CPU launch jitter, clocks), so
    two arms' step times cannot resolve 1%. What the guard can add is GPU idle time: its host read
    of the norm drains the queue, and the GPU waits until the CPU launches again. Busy time (the
    kernels) is the same in both arms; idle time is where a cost would show. Only kernels and
    copies are recorded (no CPU ops), to keep the profiler's own launch overhead small; what it
    adds falls on both arms alike."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run_steps(engine, batches, n, sync)
    spans = [(e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == DeviceType.CUDA]
    if not spans:
        raise RuntimeError("the profiler recorded no CUDA kernels")
    window = max(e for _, e in spans) - min(s for s, _ in spans)
    busy = busy_length(spans)
    return busy / n, (window - busy) / n


def profile_arms(engine, batches: list[dict], args, sync) -> dict:
    """GPU busy and idle microseconds per step, guard on and off, medians over ABBA rounds."""
    per_arm: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for on in abba(args.profile_rounds, True, False):
        set_guard(engine, on)
        per_arm[on].append(gpu_timeline(engine, batches, args.block, sync))
    med = {on: (statistics.median(b for b, _ in v), statistics.median(i for _, i in v)) for on, v in per_arm.items()}
    return {"gpu_busy_us_on": med[True][0], "gpu_busy_us_off": med[False][0],
            "gpu_idle_us_on": med[True][1], "gpu_idle_us_off": med[False][1],
            "gpu_idle_added_per_step": (med[True][1] - med[False][1]) / (med[False][0] + med[False][1]),
            "profile_rounds": {str(on): v for on, v in per_arm.items()}}


def summarize(on: list[float], off: list[float]) -> dict:
    diffs = [a / b - 1 for a, b in zip(on, off)]
    sem = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"step_s_on": statistics.median(on), "step_s_off": statistics.median(off),
            "overhead": statistics.median(on) / statistics.median(off) - 1,
            "paired_overhead_mean": statistics.fmean(diffs), "paired_overhead_sem": sem,
            "blocks_on": on, "blocks_off": off}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    r = measure(args) | {"date": time.strftime("%Y-%m-%d"), "command": " ".join(["python", __file__, *argv])}
    print(f"{r['device']}  {r['model']}  batch {r['batch']} x seq {r['seq']}: step {r['step_s_off'] * 1e3:.2f} ms "
          f"(guard off) vs {r['step_s_on'] * 1e3:.2f} ms (on): overhead {r['overhead']:+.2%} "
          f"(paired {r['paired_overhead_mean']:+.2%} ± {r['paired_overhead_sem']:.2%})")
    if "gpu_idle_us_on" in r:
        print(f"GPU timeline per step: busy {r['gpu_busy_us_off'] / 1e3:.2f} ms (off) vs {r['gpu_busy_us_on'] / 1e3:.2f} ms "
              f"(on); idle {r['gpu_idle_us_off'] / 1e3:.2f} ms (off) vs {r['gpu_idle_us_on'] / 1e3:.2f} ms (on): "
              f"the guard adds {r['gpu_idle_added_per_step']:+.2%} of a step as GPU idle time")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
