"""Generation throughput: sqltrain's batched actor vs one `generate()` call per prompt.

Predictions per second on Spider dev (same prompts, same model, same greedy decoding):

  per-prompt  the seeds' way: for each prompt, tokenize it alone and call `model.generate`
              (stops at EOS or max_new_tokens); measured on the first --baseline-limit prompts.
              Always the hf engine (the model as trained: NF4 when quantization.method=nf4).
  batched     --engine hf: sqltrain's `SQLGenerator` in-process, length-sorted, left-padded
              batches of each --batch-sizes, stopping every row when its SQL ends.
              --engine vllm: sqltrain's `VLLMGenerator` in-process (bf16 + LoRA serving), all
              prompts in one call (vLLM batches continuously; --batch-sizes is ignored), with
              its load time reported apart.
  ray         the full `generate_rows` path with the chosen engine: Ray Data actor pool
              (replicas as configured), timed end to end including Ray and actor start and
              model load, and after load (first batch start to last batch end).

Also reported: new tokens per prediction, and how often the batched SQL equals the per-prompt
SQL (padding and bf16 may flip a rare greedy choice). Model load is excluded except for ray.
The target is batched >= 20x per-prompt on one GPU. Results go to docs/benchmarks.md.

    python benchmarks/generate_throughput.py                       # GPU: configs/smollm2-gpu.yaml, all of dev
    python benchmarks/generate_throughput.py --engine vllm --baseline-limit 20 --no-ray       # vllm in-process
    python benchmarks/generate_throughput.py --engine vllm --baseline-limit 20 --no-batched  # vllm via Ray
    python benchmarks/generate_throughput.py --limit 8 --baseline-limit 4 --batch-sizes 4 \\
        --no-ray quantization.method=none                          # CPU smoke check
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} (torch {torch.__version__})"


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def per_prompt(gen, rows: list[dict]) -> dict:
    """One tokenizer + generate() call per prompt, as the seed notebooks do."""
    import torch

    from sqltrain.generate.extract import extract_sql

    tok, model = gen.tokenizer, gen.model
    sqls, new_tokens = [], 0
    _sync()
    start = time.perf_counter()
    for row in rows:
        enc = tok(row["prompt"], return_tensors="pt", add_special_tokens=False).to(gen.device)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=gen.cfg.generate.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        new = out[0, enc["input_ids"].shape[1]:]
        new_tokens += int((new != tok.pad_token_id).sum())
        sqls.append(extract_sql(tok.decode(new, skip_special_tokens=True)))
    _sync()
    seconds = time.perf_counter() - start
    return {"n": len(rows), "seconds": round(seconds, 3), "predictions_per_s": round(len(rows) / seconds, 3),
            "new_tokens_per_prediction": round(new_tokens / len(rows), 1), "sql": sqls}


def batched(gen, rows: list[dict], batch_size: int) -> dict:
    """SQLGenerator.__call__ over length-sorted batches, as each Ray Data actor runs it."""
    sqls: dict[int, str] = {}
    new_tokens = 0
    _sync()
    start = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        out = gen({k: [r[k] for r in chunk] for k in chunk[0]})
        sqls.update(zip((int(x) for x in out["index"]), out["sql"]))
        new_tokens += sum(out["new_tokens"])
    _sync()
    seconds = time.perf_counter() - start
    return {"batch_size": batch_size, "n": len(rows), "seconds": round(seconds, 3),
            "predictions_per_s": round(len(rows) / seconds, 3),
            "new_tokens_per_prediction": round(new_tokens / len(rows), 1), "sql_by_index": sqls}


def vllm_batched(cfg, rows: list[dict]) -> dict:
    """VLLMGenerator in-process: load timed apart, one warm-up call, then all rows in one call."""
    from sqltrain.generate.pipeline import resolve_vllm_compile
    from sqltrain.generate.vllm_engine import VLLMGenerator

    cfg = resolve_vllm_compile(cfg, len(rows))  # one replica: what generate_rows would pick
    start = time.perf_counter()
    gen = VLLMGenerator(cfg.to_dict())
    load = time.perf_counter() - start
    gen({k: [r[k] for r in rows[:8]] for k in rows[0]})  # warm-up
    start = time.perf_counter()
    out = gen({k: [r[k] for r in rows] for k in rows[0]})
    seconds = time.perf_counter() - start
    new_tokens = sum(out["new_tokens"])
    return {"engine": "vllm", "vllm_compile": cfg.generate.vllm_compile, "n": len(rows),
            "load_seconds": round(load, 3), "seconds": round(seconds, 3),
            "predictions_per_s": round(len(rows) / seconds, 3), "tokens_per_s": round(new_tokens / seconds, 1),
            "new_tokens_per_prediction": round(new_tokens / len(rows), 1),
            "sql_by_index": dict(zip((int(x) for x in out["index"]), out["sql"]))}


def ray_path(cfg, rows: list[dict]) -> dict:
    from sqltrain.generate.pipeline import generate_rows, timing

    start = time.perf_counter()
    out = generate_rows(cfg, None, rows, log=lambda m: print(m, file=sys.stderr))
    seconds = time.perf_counter() - start
    return {"batch_size": cfg.generate.batch_size, "replicas": cfg.generate.num_replicas, "n": len(out),
            "seconds_incl_startup": round(seconds, 3), "predictions_per_s": round(len(out) / seconds, 3),
            **timing(out)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "smollm2-gpu.yaml"))
    ap.add_argument("--split", default="dev")
    ap.add_argument("--limit", type=int, help="prompts for the batched and ray runs (default: the whole split)")
    ap.add_argument("--baseline-limit", type=int, default=50, help="prompts for the per-prompt baseline")
    ap.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64, 128],
                    help="comma-separated batch sizes for the batched runs (default 16,64,128)")
    ap.add_argument("--engine", choices=["hf", "vllm"], default="hf",
                    help="engine of the batched and ray runs (generate.engine; default hf)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray Data actor run")
    ap.add_argument("--no-batched", action="store_true",
                    help="skip the in-process batched runs (an in-process vLLM may keep its GPU memory "
                         "until exit: measure --engine vllm as --no-ray, then --no-batched)")
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("overrides", nargs="*", help="config key.sub=value overrides")
    args = ap.parse_args()

    from sqltrain.config import load_config
    from sqltrain.generate.engine import SQLGenerator
    from sqltrain.generate.pipeline import build_prompt_rows, check_engine

    cfg = load_config(args.config, [*args.overrides, f"generate.engine={args.engine}",
                                    *([f"generate.limit={args.limit}"] if args.limit else [])])
    check_engine(cfg)  # --engine vllm without vllm installed: say so before loading anything
    rows = build_prompt_rows(cfg, args.split)  # longest first, as run_generate batches them
    by_index = sorted(rows, key=lambda r: r["index"])
    result = {"date": datetime.date.today().isoformat(), "device": device_name(), "engine": args.engine,
              "model": cfg.model.name,
              "quantization": cfg.quantization.method, "dtype": cfg.model.dtype, "split": args.split,
              "max_new_tokens": cfg.generate.max_new_tokens, "prompts": len(rows),
              "mean_prompt_tokens": round(sum(r["prompt_tokens"] for r in rows) / len(rows), 1),
              "command": "python benchmarks/generate_throughput.py " + " ".join(sys.argv[1:])}
    gen = SQLGenerator(cfg.to_dict())
    warm = max(args.batch_sizes) if args.engine == "hf" else 8
    batched(gen, rows[:warm], warm)  # warm-up: CUDA context, kernels
    base_rows = by_index[: args.baseline_limit]
    result["per_prompt"] = per_prompt(gen, base_rows)
    ref = result["per_prompt"].pop("sql")
    _save(result, args.out)  # partial results survive a run cut short by a time limit
    result["batched"] = []
    for bs in args.batch_sizes if args.engine == "hf" and not args.no_batched else []:
        result["batched"].append(_compare(batched(gen, rows, bs), base_rows, ref, result))
        _save(result, args.out)
    del gen
    _free_gpu()
    if args.engine == "vllm" and not args.no_batched:
        result["batched"].append(_compare(vllm_batched(cfg, rows), base_rows, ref, result))
        _save(result, args.out)
        _free_gpu()
    if not args.no_ray:
        result["ray"] = ray_path(cfg, rows)
        result["ray"]["speedup_vs_per_prompt"] = round(
            result["ray"]["predictions_per_s"] / result["per_prompt"]["predictions_per_s"], 1)
        _save(result, args.out)
    print(json.dumps(result, indent=2))
    return 0


def _compare(b: dict, base_rows: list[dict], ref: list[str], result: dict) -> dict:
    """Agreement with the per-prompt SQL and speedup over it (the hf per-prompt baseline)."""
    sqls = b.pop("sql_by_index")
    b["same_sql_as_per_prompt"] = round(sum(sqls[r["index"]] == s for r, s in zip(base_rows, ref)) / len(ref), 3)
    b["speedup_vs_per_prompt"] = round(b["predictions_per_s"] / result["per_prompt"]["predictions_per_s"], 1)
    return b


def _free_gpu() -> None:
    """Release the in-process model's GPU memory before the next engine claims its share."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _save(result: dict, out: str | None) -> None:
    if out:
        from sqltrain.io import atomic_write_text

        atomic_write_text(out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
