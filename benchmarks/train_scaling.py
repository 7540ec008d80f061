"""Training throughput as the worker count grows: tokens/s and step time for N Ray Train workers,
DeepSpeed ZeRO-2 and ZeRO-3, compiled and eager, through the real `run_train` path.

Models (--models, comma-separated):
  llama3-8b        random-init Llama-3-8B shape, NF4 + bf16 storage, fixed-length random rows
                   (--seq tokens, micro batch 4): the shape of configs/llama3-8b-qlora-*.yaml
  qwen0.5b-spider  Qwen2.5-Coder-0.5B (the GGUF of configs/qwen2.5-coder-0.5b-spider.yaml) on
                   the real prepared Spider train shards, micro batch 16, length-grouped; the
                   shards are prepared once under --work (or pass --spider-data RUN_DIR/data)
  tiny             random-init few-MB llama, no quantization, random rows: the CPU smoke model

For every model x workers x ZeRO stage x compile setting one training run of --warmup + --steps
optimizer steps, each reported (train.log_every=1). Per run:
  tokens_per_s  non-pad tokens of all workers over the timed steps / their wall time
  median_step_tokens_per_s  the median timed step's tokens/s (steady state, without recompiles)
  step_time_s   median wall time of one timed optimizer step
  efficiency    tokens_per_s(N) / (N x tokens_per_s(1)), same model, stage and compile setting
Runs are weak scaling: each worker keeps its micro batch, so the global batch grows with N.
Compiled and eager runs of one model, N and stage train on the same rows with the same seed, so
their per-step losses are compared (`compile_vs_eager`: largest relative difference).

The JSON (--out) is rewritten after every run, so a run cut short keeps what finished; runs are
ordered so the headline figures (ZeRO-2, compiled, 1 then N workers) come first.

GPU examples (repo root; the Qwen GGUF from ../shared/models/get-model.sh qwen-coder-0.5b models/):
  python benchmarks/train_scaling.py --models qwen0.5b-spider,llama3-8b --workers 1,2 --zero 2 \
      --compile on --out docs/gpu-runs/scaling-core.json
  python benchmarks/train_scaling.py --models qwen0.5b-spider,llama3-8b --workers 2 --zero 2,3 \
      --compile off --out docs/gpu-runs/scaling-eager-zero3.json
CPU smoke (what tests/test_train_scaling.py runs):
  python benchmarks/train_scaling.py --smoke --out /tmp/scaling-smoke.json
Trailing key=value arguments override every run's config.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

QWEN_CONFIG = REPO / "configs" / "qwen2.5-coder-0.5b-spider.yaml"


@dataclass(frozen=True)
class Run:
    model: str
    workers: int
    zero: int
    compiled: bool

    @property
    def label(self) -> str:
        return f"{self.model} x{self.workers} ZeRO-{self.zero} {'compiled' if self.compiled else 'eager'}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="qwen0.5b-spider,llama3-8b", help="comma-separated: llama3-8b, qwen0.5b-spider, tiny")
    p.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2,4")
    p.add_argument("--zero", default="2,3", help="ZeRO stages")
    p.add_argument("--compile", default="on,off", help="on, off or on,off")
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps per run")
    p.add_argument("--warmup", type=int, default=8, help="untimed optimizer steps first (compilation happens here)")
    p.add_argument("--seq", type=int, default=512, help="row length of the synthetic-row models")
    p.add_argument("--work", default=None, help="folder for prepared data and runs (default: a temp dir)")
    p.add_argument("--spider-dir", default=os.environ.get("SQLTRAIN_SPIDER_DIR", str(REPO.parent / "shared" / "spider")))
    p.add_argument("--qwen", default="models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", help="Qwen2.5-Coder-0.5B source")
    p.add_argument("--spider-data", default=None, help="an already prepared {run_dir}/data for qwen0.5b-spider")
    p.add_argument("--cache-dir", default="~/.cache/sqltrain/models", help="model.cache_dir")
    p.add_argument("--smoke", action="store_true", help="CPU: tiny model, 1 and 2 workers, ZeRO-2, eager")
    p.add_argument("--out", help="write the results as JSON here (after every run)")
    p.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.cpus_per_worker=4")
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.zero, args.compile = "tiny", "2", "off"
        args.steps, args.warmup, args.seq = min(args.steps, 4), min(args.warmup, 2), min(args.seq, 64)
    return args


def plan_runs(args) -> list[Run]:
    """The runs, headline first: per model ZeRO-2 compiled 1..N workers, then the rest."""
    models = args.models.split(",")
    workers = sorted(int(w) for w in args.workers.split(","))
    stages = [int(z) for z in args.zero.split(",")]
    compiled = [{"on": True, "off": False}[c] for c in args.compile.split(",")]
    runs = [Run(m, w, z, c) for m, z, c, w in itertools.product(models, stages, compiled, workers)]
    return sorted(runs, key=lambda r: (r.zero != 2, not r.compiled, models.index(r.model), r.workers))


def model_overrides(args, model: str, work: Path) -> tuple[str | None, list[str]]:
    """(config file, overrides) of a model, and its data prepared under work/ when needed."""
    common = [f"model.cache_dir={args.cache_dir}", "train.warmup_ratio=0.0"]
    if model == "qwen0.5b-spider":
        return str(QWEN_CONFIG), common + [f"model.name={args.qwen}", f"data.spider_dir={args.spider_dir}",
                                           f"data.exclude={args.spider_dir}/database/KNOWN_GAPS.tsv",
                                           f"linking.cache_dir={work / 'value_index'}"]
    synthetic = ["quantization.method=none", "model.dtype=auto"] if model == "tiny" else [
        "quantization.method=nf4", "quantization.compute_dtype=bf16", "quantization.quant_storage=bf16",
        "model.dtype=bf16"]
    return None, common + [f"model.name=random:{'tiny' if model == 'tiny' else 'llama3-8b'}",
                           "model.gradient_checkpointing=false", "train.micro_batch_size=4", *synthetic]


def data_for(args, run: Run, cfg_file, overrides, work: Path) -> Path:
    """The prepared data dir a run links to: Spider shards (prepared once) or random rows."""
    from sqltrain.config import load_config

    if run.model == "qwen0.5b-spider":
        if args.spider_data:
            return Path(args.spider_data).absolute()
        from sqltrain.prep.pipeline import run_prepare

        return run_prepare(load_config(cfg_file, [*overrides, f"run_dir={work / 'qwen-data'}"])).data_dir
    rows_dir = work / f"rows-{run.model}-{args.seq}"
    if not rows_dir.exists():
        from train_throughput import write_shards

        per_worker = 4 * (args.warmup + args.steps)  # micro batch 4
        most = max(8, *(int(w) for w in args.workers.split(",")))
        write_shards(rows_dir, per_worker * most, 2 * most, args.seq)  # enough rows for every N
    return rows_dir / "data"


def run_config(args, run: Run, work: Path):
    from sqltrain.config import load_config

    cfg_file, overrides = model_overrides(args, run.model, work)
    data = data_for(args, run, cfg_file, overrides, work)
    run_dir = work / "runs" / f"{run.model}-w{run.workers}-z{run.zero}-{'c' if run.compiled else 'e'}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "data").exists():
        (run_dir / "data").symlink_to(data, target_is_directory=True)
    total = args.warmup + args.steps
    gpu = not args.smoke
    return load_config(cfg_file, [
        *overrides, f"run_dir={run_dir}", f"train.num_workers={run.workers}", f"deepspeed.stage={run.zero}",
        f"train.compile={str(run.compiled).lower()}", f"train.use_gpu={str(gpu).lower()}",
        f"train.cpus_per_worker={4.0 if gpu else 0.5}", f"train.max_steps={total}", "train.log_every=1",
        f"train.eval_every={total}", f"train.save_every={total}", "train.eval_examples=32", "train.max_failures=0",
        *(["deepspeed.bucket_size=1000000"] if not gpu else []), *args.overrides,
    ])


def measure(args, run: Run, work: Path) -> dict:
    """One training run -> its figures (or the error that stopped it)."""
    from sqltrain.io import read_jsonl
    from sqltrain.train.driver import run_train

    row = {"model": run.model, "workers": run.workers, "zero": run.zero, "compiled": run.compiled}
    started = time.perf_counter()
    try:
        cfg = run_config(args, run, work)
        metrics = read_jsonl(run_train(cfg).metrics_path)
    except Exception as e:  # one failed combination must not cost the others their figures
        return row | {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500],
                      "wall_s": time.perf_counter() - started}
    return row | window_figures(metrics, args.warmup) | {"wall_s": time.perf_counter() - started}


def window_figures(metrics: list[dict], warmup: int) -> dict:
    """Throughput from per-step metrics rows: each row's window is one optimizer step."""
    tokens, seconds = [], []
    previous = 0
    for r in metrics:
        step_tokens = r["tokens"] - previous
        previous = r["tokens"]
        if r["step"] > warmup and r["tokens_per_s"]:
            tokens.append(step_tokens)
            seconds.append(step_tokens / r["tokens_per_s"])
    if not seconds:
        return {"error": f"no timed steps (warm-up {warmup} of {len(metrics)})"}
    # Both: the mean carries the recompiles that new sequence lengths cause during the timed
    # steps (real Spider batches), the median step is the steady state a long run approaches.
    return {"tokens_per_s": sum(tokens) / sum(seconds), "step_time_s": statistics.median(seconds),
            "median_step_tokens_per_s": statistics.median(t / s for t, s in zip(tokens, seconds)),
            "steps_timed": len(seconds), "losses": [r["loss"] for r in metrics],
            "max_mem_gb": metrics[-1].get("max_mem_gb"), "skipped_steps": metrics[-1].get("skipped_steps", 0)}


def add_efficiency(results: list[dict]) -> None:
    """efficiency = tokens/s(N) / (N x tokens/s(1)) against the 1-worker run of the same setup."""
    one = {(r["model"], r["zero"], r["compiled"]): r["tokens_per_s"]
           for r in results if r["workers"] == 1 and "tokens_per_s" in r}
    for r in results:
        base = one.get((r["model"], r["zero"], r["compiled"]))
        if base and "tokens_per_s" in r:
            r["speedup"] = r["tokens_per_s"] / base
            r["efficiency"] = r["speedup"] / r["workers"]


def compile_vs_eager(results: list[dict]) -> list[dict]:
    """Per-step losses of compiled vs eager runs of the same model, N and stage."""
    by_key = {(r["model"], r["workers"], r["zero"], r["compiled"]): r for r in results if "losses" in r}
    pairs = []
    for (model, workers, zero, compiled), r in by_key.items():
        eager = by_key.get((model, workers, zero, False))
        if not compiled or eager is None:
            continue
        diffs = [abs(a - b) / max(abs(b), 1e-9) for a, b in zip(r["losses"], eager["losses"])
                 if a is not None and b is not None]
        pairs.append({"model": model, "workers": workers, "zero": zero, "steps": len(diffs),
                      "max_rel_loss_diff": max(diffs) if diffs else None,
                      "final_loss": {"compiled": r["losses"][-1], "eager": eager["losses"][-1]}})
    return pairs


def device_name(smoke: bool) -> str:
    import torch

    if not smoke and torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU ({os.cpu_count()} cores)"


def report(args, argv, results: list[dict]) -> dict:
    add_efficiency(results)
    return {"device": device_name(args.smoke), "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(["python", "benchmarks/train_scaling.py", *argv]),
            "steps": args.steps, "warmup": args.warmup, "runs": results, "compile_vs_eager": compile_vs_eager(results)}


def print_table(rep: dict) -> None:
    print(f"\n{rep['device']}  {rep['date']}  ({rep['steps']} timed steps after {rep['warmup']})")
    print(f"{'run':<44}{'tokens/s':>11}{'step s':>9}{'eff.':>7}{'GiB':>7}")
    for r in rep["runs"]:
        label = Run(r["model"], r["workers"], r["zero"], r["compiled"]).label
        if "error" in r:
            print(f"{label:<44}  failed: {r['error'][:70]}")
            continue
        eff = f"{r['efficiency']:.2f}" if "efficiency" in r else ""
        mem = f"{r['max_mem_gb']:.1f}" if r.get("max_mem_gb") else ""
        print(f"{label:<44}{r['tokens_per_s']:>11.0f}{r['step_time_s']:>9.3f}{eff:>7}{mem:>7}")
    for c in rep["compile_vs_eager"]:
        print(f"compiled vs eager, {c['model']} x{c['workers']} ZeRO-{c['zero']}: largest relative loss "
              f"difference over {c['steps']} steps {c['max_rel_loss_diff']:.2e}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from sqltrain.raycluster import ensure_ray

    ensure_ray()  # one Ray for every run
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sqltrain-scaling-") as tmp:
        work = Path(args.work or tmp).absolute()
        for run in plan_runs(args):
            print(f"[train_scaling] {run.label}", flush=True)
            results.append(measure(args, run, work))
            if args.out:
                Path(args.out).write_text(json.dumps(report(args, argv, results), indent=2) + "\n")
    rep = report(args, argv, results)
    print_table(rep)
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=2) + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
