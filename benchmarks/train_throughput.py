"""Training throughput on one GPU: sqltrain vs the seed stack, same model, same data shape.

The seed stack is the usual single-process QLoRA recipe: transformers `Trainer` + PEFT +
bitsandbytes NF4 (`prepare_model_for_kbit_training`), gradient checkpointing, paged AdamW 8-bit.
sqltrain is the real `run_train` path: Ray Train (1 GPU worker) + DeepSpeed ZeRO-2 + NF4 with
bf16 storage + PEFT. Both train a random-init model of the chosen architecture (default: the
Llama-3-8B shape, materialised once into model.cache_dir so both load identical weights) on
fixed-length random token rows (batch 4 x seq 512 by default).

sqltrain runs without gradient checkpointing by default: a frozen 4-bit base needs no weight
gradients, so recomputing the forward costs a third of the step (6N vs 4N FLOPs/token), and the
activations of batch 4 x 512 fit in 80 GB. Pass model.gradient_checkpointing=true for a
like-for-like run. It also uses its GPU defaults: regional torch.compile (train.compile=auto)
and no per-tensor bf16 overflow test (deepspeed.check_grad_overflow=false); override either to
see its share.

tokens/s = tokens per optimizer step / median step time after warm-up;
MFU = 4 * N * tokens/s / peak (frozen base: forward 2N + backward-to-activations 2N FLOPs per
token; N = base parameter count; recomputation from gradient checkpointing is not counted).

GPU only. Examples (from the repo root):
    python benchmarks/train_throughput.py
    python benchmarks/train_throughput.py --only sqltrain train.compile=false
    python benchmarks/train_throughput.py --model random:smollm2-135m --steps 10   # quick check
Trailing key=value arguments override sqltrain's config (not the seed stack's).
Record results in docs/benchmarks.md with the device, date and command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOKEN_ID_RANGE = 32000  # random ids valid for every preset's vocabulary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random:llama3-8b", help="model.name for both stacks")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps first")
    p.add_argument("--peak-tflops", type=float, default=800.0, help="bf16 dense peak of the GPU for MFU")
    p.add_argument("--only", choices=["both", "seed", "sqltrain"], default="both")
    p.add_argument("--cache-dir", default="~/.cache/sqltrain/models", help="model.cache_dir")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--seed-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="sqltrain config overrides, e.g. model.gradient_checkpointing=false")
    return p.parse_args(argv)


def base_config(args, run_dir: str):
    from sqltrain.config import load_config

    total = args.warmup + args.steps
    return load_config(None, [
        f"run_dir={run_dir}", f"model.name={args.model}", f"model.cache_dir={args.cache_dir}",
        "model.dtype=bf16", "model.gradient_checkpointing=false",
        "quantization.method=nf4", "quantization.compute_dtype=bf16", "quantization.quant_storage=bf16",
        "deepspeed.stage=2", "train.num_workers=1", "train.use_gpu=true", "train.cpus_per_worker=4",
        f"train.micro_batch_size={args.batch}", "train.grad_accum=1", f"train.max_steps={total}",
        "train.log_every=1", f"train.eval_every={total}", f"train.save_every={total}",
        f"train.eval_examples={args.batch}", "train.warmup_ratio=0.0", *args.overrides,
    ])


def synthetic_rows(n: int, seq: int, seed: int = 0) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    return [[rng.randrange(1, TOKEN_ID_RANGE) for _ in range(seq)] for _ in range(n)]


def write_shards(run_dir: Path, train_rows: int, dev_rows: int, seq: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split, n in (("train", train_rows), ("dev", dev_rows)):
        ids = synthetic_rows(n, seq, seed=len(split))
        table = pa.table({
            "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
            "labels": pa.array(ids, type=pa.list_(pa.int32())),
            "length": pa.array([seq] * n, type=pa.int32()),
            "id": [f"{split}-{i}" for i in range(n)], "db_id": ["synthetic"] * n, "hardness": ["easy"] * n,
        })
        (run_dir / "data" / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, run_dir / "data" / split / "part-00000.parquet")


def run_sqltrain(args) -> dict:
    from sqltrain.io import read_jsonl
    from sqltrain.train.driver import run_train

    with tempfile.TemporaryDirectory(prefix="sqltrain-bench-") as d:
        cfg = base_config(args, d)
        write_shards(Path(d), cfg.train.micro_batch_size * (args.warmup + args.steps), cfg.train.micro_batch_size, args.seq)
        result = run_train(cfg)
        rows = read_jsonl(result.metrics_path)
    timed = [r["tokens_per_s"] for r in rows if r["step"] > args.warmup]
    return {"stack": "sqltrain", "tokens_per_s": statistics.median(timed), "steps_timed": len(timed),
            "max_mem_gb": rows[-1]["max_mem_gb"],
            "config": {k: cfg.to_dict()[k] for k in ("model", "quantization", "lora", "deepspeed", "train")}}


def run_seed(args) -> dict:
    """The seed stack, in this process (called in a subprocess so its GPU memory is freed)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, Trainer, TrainerCallback, TrainingArguments

    from sqltrain.model.loading import resolve_model_source

    cfg = base_config(args, tempfile.mkdtemp())
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_source(cfg.model).path, quantization_config=bnb,
                                                 dtype=torch.bfloat16, device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                             target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"))
    rows = synthetic_rows(args.batch * (args.warmup + args.steps), args.seq)
    data = [{"input_ids": torch.tensor(r), "attention_mask": torch.ones(args.seq, dtype=torch.long), "labels": torch.tensor(r)}
            for r in rows]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, *a, **k):
            torch.cuda.synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.started)

    timer = StepTimer()
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        gradient_checkpointing=True, optim="paged_adamw_8bit", bf16=True, learning_rate=2e-4,
        max_steps=args.warmup + args.steps, logging_steps=10**6, save_strategy="no", report_to="none",
        remove_unused_columns=False, dataloader_num_workers=0,
    )
    Trainer(model=model, args=training_args, train_dataset=data, callbacks=[timer]).train()
    step = statistics.median(timer.times[args.warmup:])
    return {"stack": "seed (Trainer+PEFT+bnb)", "tokens_per_s": args.batch * args.seq / step,
            "steps_timed": len(timer.times[args.warmup:]), "max_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


def seed_in_subprocess(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--seed-worker", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"seed stack failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def param_count(args) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sqltrain.model.loading import resolve_model_source

    path = resolve_model_source(base_config(args, tempfile.mkdtemp()).model).path
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.seed_worker:
        print(json.dumps(run_seed(args)))
        return 0
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("train_throughput.py needs a CUDA GPU")
    n_params = param_count(args)  # also materialises the model once, untimed
    results = []
    if args.only in ("both", "seed"):
        results.append(seed_in_subprocess([a for a in argv if a != "--seed-worker"]))
    if args.only in ("both", "sqltrain"):
        results.append(run_sqltrain(args))
    for r in results:
        r["mfu"] = 4 * n_params * r["tokens_per_s"] / (args.peak_tflops * 1e12)
    report = {"device": torch.cuda.get_device_name(0), "date": time.strftime("%Y-%m-%d"), "model": args.model,
              "params": n_params, "batch": args.batch, "seq": args.seq, "command": " ".join(["python", __file__, *argv]),
              "results": results}
    if len(results) == 2:
        report["speedup"] = results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    print(f"\n{report['device']}  {args.model} ({n_params / 1e9:.2f}B)  batch {args.batch} x seq {args.seq}")
    print(f"{'stack':<28}{'tokens/s':>12}{'MFU':>8}{'max GiB':>10}")
    for r in results:
        print(f"{r['stack']:<28}{r['tokens_per_s']:>12.0f}{r['mfu']:>8.1%}{r['max_mem_gb']:>10.1f}")
    if "speedup" in report:
        print(f"sqltrain / seed: {report['speedup']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
