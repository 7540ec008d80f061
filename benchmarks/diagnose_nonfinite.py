"""Replay the batches of training steps that were skipped for a non-finite gradient norm, eager
and compiled, and say where the first inf/NaN appears.

The worker saves the micro batches of the first skipped steps under
RUN_DIR/train/nonfinite/step-<N>-rank-<R>.pt. This script loads the base model as the run trained
it (the adapter's sqltrain_config.yaml: same quantization and dtype), puts the adapter's LoRA
weights on it as trainable bf16 tensors (as DeepSpeed held them), and runs forward + backward on
each saved batch twice: eager, then with the run's regional torch.compile. For each pass it
reports the loss, the global gradient norm (as clipping computes it), the first decoder layer
whose output is not finite, and the LoRA tensors with non-finite gradients, per layer; the eager
pass also names, with backward hooks, the module where the gradient first stops being finite
(`born_in`), and the report keeps the end of each replayed row's text (which examples they are).

The adapter is a later or earlier checkpoint than the weights at the skipped step, so a batch
that does not reproduce is not proof of innocence; one that does names its layer.

Without the run's adapter (weights stay on the GPU host), `--config CONFIG` builds the model from
the run's config with a fresh LoRA whose B matrices are drawn from N(0, --lora-std) instead of
zeros (a trained-looking adapter: with B = 0, A gets no gradient at all). Batches can be rebuilt
from the shards with benchmarks/rebuild_batches.py, the skipped steps' and neighbouring steps'
as controls: if only the skipped ones go non-finite, the examples are the cause, not the weights.

GPU host, from the repository root:
    python benchmarks/diagnose_nonfinite.py RUN_DIR [--adapter DIR | --config CONFIG] [--out FILE.json] [key=value ...]
Overrides change the replay's model config, to test a suspect: model.attn_implementation=eager
(the SDPA kernel?), quantization.compute_dtype=fp32 (bf16 range?); train.sdpa_cudnn=false
train.pad_to_multiple_of=8 replays with the fix (the worker's kernel flag, the batches re-padded).
--sdpa-sweep also replays each batch under each SDPA backend alone and at +1 / +8 tokens of
padding. What it found (2026-12-07, H100, docs/benchmarks.md "Root cause"): the cuDNN backend's
backward, on 16 x 448 and 16 x 320 batches.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def base_model(cfg):
    """The run's (quantized) base model, on the GPU when there is one."""
    import torch

    from sqltrain.model.loading import load_base_model

    return load_base_model(cfg, device_map={"": 0} if torch.cuda.is_available() else None)


def as_trained(model):
    """Trainable weights in bf16, as DeepSpeed bf16 keeps them; no KV cache (training forward)."""
    import torch

    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.bfloat16)
    model.config.use_cache = False
    return model


def load_model(adapter: Path, overrides: list[str] = ()):
    from peft import PeftModel

    from sqltrain.config import load_config

    cfg = load_config(adapter / "sqltrain_config.yaml", overrides)
    return cfg, as_trained(PeftModel.from_pretrained(base_model(cfg), str(adapter), is_trainable=True))


def fresh_lora_model(config: Path, overrides: list[str] = (), std: float = 0.02, seed: int = 0):
    """The run's base model + a new LoRA with B ~ N(0, std) (see the module docstring)."""
    import torch

    from sqltrain.config import load_config
    from sqltrain.model.loading import attach_lora

    cfg = load_config(config, overrides)
    model = attach_lora(base_model(cfg), cfg)
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data = (torch.randn(p.shape, generator=gen) * std).to(p.device, p.dtype)
    return cfg, as_trained(model)


def decoder_layers(model):
    inner = model.base_model.model.model
    return list(inner.layers)


LAYER = re.compile(r"layers\.(\d+)\.")
LORA = re.compile(r"(\w+)\.lora_([AB])\.")


def grads_by_layer(names: list[str]) -> dict[str, list[str]]:
    """'...layers.8.self_attn.q_proj.lora_A.default.weight' -> {'8': ['q_proj.A']}: where the
    non-finite LoRA gradients are, compact enough to read the pattern (which layers, which modules)."""
    out: dict[str, list[str]] = {}
    for n in names:
        layer, lora = LAYER.search(n), LORA.search(n)
        key = layer.group(1) if layer else "other"
        out.setdefault(key, []).append(f"{lora.group(1)}.{lora.group(2)}" if lora else n)
    return dict(sorted(out.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0)))


def _all_finite(grads) -> bool | None:
    """None when no gradient was given (a module called with keyword tensors only: its hook sees none)."""
    given = [g for g in grads if g is not None]
    return all(bool(g.isfinite().all()) for g in given) if given else None


def trace_backward(model):
    """Full backward hooks on every module inside the decoder layers. Each hook fires when the
    backward pass has computed the gradient of its module's inputs, innermost modules first, so the
    first event whose output gradient is finite and input gradient is not names the module where the
    non-finite gradient is born (a parent module there, and no child before it, means an op between
    its children: e.g. self_attn with finite o_proj but non-finite q_proj output = the attention core).
    Returns (events, handles); events are (module name, output grads finite, input grads finite or
    None when the hook saw no input gradient)."""
    events: list[tuple[str, bool | None, bool | None]] = []

    def hook(name):
        return lambda module, grad_in, grad_out: events.append((name, _all_finite(grad_out), _all_finite(grad_in)))

    handles = [m.register_full_backward_hook(hook(name)) for name, m in model.named_modules()
               if LAYER.search(name + ".") and not name.endswith((".lora_dropout", ".default", ".base_layer"))
               and not LORA.search(name + ".")]
    return events, handles


def summarize_trace(events: list[tuple[str, bool | None, bool | None]]) -> dict:
    """Where the first non-finite gradient appears, and the events around it."""
    first = next((i for i, (_, out_ok, in_ok) in enumerate(events) if out_ok is False or in_ok is False), None)
    born = next((name for name, out_ok, in_ok in events if out_ok is not False and in_ok is False), None)
    if first is None:
        return {"born_in": None, "trace": []}
    word = {True: "ok", False: "NON-FINITE", None: "?"}
    return {"born_in": born, "trace": [f"{n}: out {word[o]}, in {word[i]}" for n, o, i in events[max(first - 3, 0): first + 9]]}


def one_pass(model, batches: list[dict], trace: bool = False) -> dict:
    """Forward + backward over the step's micro batches; where things stop being finite. With
    trace, backward hooks also name the module where the gradient first stops being finite (eager
    only: hooks would split the compiled regions)."""
    import torch

    finite_out: list = []
    hooks = [layer.register_forward_hook(lambda m, a, out, i=i: finite_out.append(
        (i, torch.isfinite(out[0] if isinstance(out, tuple) else out).all())))
        for i, layer in enumerate(decoder_layers(model))]
    events, bw_hooks = trace_backward(model) if trace else ([], [])
    model.zero_grad(set_to_none=True)
    losses = []
    try:
        for b in batches:
            batch = {k: v.to(model.device) for k, v in b.items()}
            loss = model(**batch).loss / len(batches)
            loss.backward()
            losses.append(float(loss.detach()) * len(batches))
    finally:
        for h in hooks + bw_hooks:
            h.remove()
    bad_layers = sorted({i for i, ok in finite_out if not bool(ok)})
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads.values()]))
    bad_grads = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    report = {"losses": losses, "grad_norm": float(norm), "first_nonfinite_layer": bad_layers[0] if bad_layers else None,
              "nonfinite_layers": bad_layers, "n_nonfinite_grads": len(bad_grads), "n_lora_grads": len(grads),
              "nonfinite_grads_by_layer": grads_by_layer(bad_grads)}
    return report | (summarize_trace(events) if trace else {})


def padded(batch: dict, multiple: int = 1, extra: int = 0) -> dict:
    """The saved batch right-padded to a multiple of `multiple` tokens, then `extra` more
    (masked, no labels: the loss is unchanged), as train.pad_to_multiple_of pads in training."""
    import torch

    from sqltrain.train.data import IGNORE_INDEX

    n, width = batch["input_ids"].shape
    add = (-width) % multiple + extra
    fill = {"input_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}
    return {k: torch.cat([v, torch.full((n, add), fill[k], dtype=v.dtype)], 1) if k in fill else v
            for k, v in batch.items()}


SDPA_BACKENDS = ("MATH", "EFFICIENT_ATTENTION", "FLASH_ATTENTION", "CUDNN_ATTENTION")


def sdpa_sweep(model, batches: list[dict]) -> dict:
    """One eager pass per SDPA backend alone, and with the default choice at +1 and +8 tokens of
    padding: which kernel, at which lengths, makes the gradient non-finite. A backend that cannot
    run the batch (e.g. flash with a padding mask) is reported as such."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def summary(bs, backend=None):
        try:
            if backend is None:
                r = one_pass(model, bs)
            else:
                with sdpa_kernel([getattr(SDPBackend, backend)]):
                    r = one_pass(model, bs)
        except RuntimeError as e:  # "No available kernel": this backend cannot take the batch
            return {"error": str(e).splitlines()[0][:200]}
        return {"seq": bs[0]["input_ids"].shape[1], "grad_norm": r["grad_norm"], "n_nonfinite_grads": r["n_nonfinite_grads"]}

    out = {f"only {b}": summary(batches, b) for b in SDPA_BACKENDS}
    return out | {f"default +{k} pad": summary([padded(b, extra=k) for b in batches]) for k in (1, 8)}


def batch_rows(tokenizer, batches: list[dict], tail_chars: int = 400) -> list[str]:
    """The end of each row's text (question, schema tail and target SQL): which examples these are."""
    rows = []
    for b in batches:
        for ids, mask in zip(b["input_ids"], b["attention_mask"]):
            rows.append(tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)[-tail_chars:])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--adapter", help="adapter dir (default RUN_DIR/train/adapter)")
    which.add_argument("--config", help="no adapter: the run's config, with a fresh LoRA (B ~ N(0, --lora-std))")
    p.add_argument("--lora-std", type=float, default=0.02)
    p.add_argument("--out", help="write the report as JSON here too")
    p.add_argument("--backend", default="inductor", help="torch.compile backend of the compiled pass")
    p.add_argument("--eager-only", action="store_true", help="no compiled pass (when compilation is not the suspect)")
    p.add_argument("--sdpa-sweep", action="store_true",
                   help="also replay under each SDPA backend alone and with extra padding (which kernel, which lengths)")
    p.add_argument("overrides", nargs="*", help="config overrides for the replay, e.g. model.attn_implementation=eager "
                                                "(is it the SDPA kernel?) or quantization.compute_dtype=fp32")
    args = p.parse_intermixed_args(argv)  # RUN_DIR, options and key=value overrides in any order
    import torch
    from accelerate.utils import compile_regions_deepspeed

    run = Path(args.run_dir)
    files = sorted((run / "train" / "nonfinite").glob("step-*-rank-*.pt"))
    if not files:
        print(f"no saved batches under {run / 'train' / 'nonfinite'}: no step was skipped")
        return 0
    if args.config:
        cfg, model = fresh_lora_model(Path(args.config), args.overrides, args.lora_std)
    else:
        cfg, model = load_model(Path(args.adapter or run / "train" / "adapter"), args.overrides)
    from sqltrain.model.loading import load_tokenizer
    from sqltrain.train.worker import select_attention_kernels

    select_attention_kernels(cfg)  # train.sdpa_cudnn, as the run's worker set it
    tokenizer = load_tokenizer(cfg.model)
    saved = {f.name: [padded(b, cfg.train.pad_to_multiple_of) for b in torch.load(f)] for f in files}
    report = {"eager": {}, "compiled": {}, "rows": {}, "sdpa_sweep": {}}
    for name, batches in saved.items():
        report["eager"][name] = one_pass(model, batches, trace=True) | {
            "shapes": [list(b["input_ids"].shape) for b in batches]}
        report["rows"][name] = batch_rows(tokenizer, batches)
        if args.sdpa_sweep:
            report["sdpa_sweep"][name] = sdpa_sweep(model, batches)
            for variant, r in report["sdpa_sweep"][name].items():
                print(f"sdpa     {name} {variant}: {r}")
    if not args.eager_only:
        torch._dynamo.config.recompile_limit = 64
        compile_regions_deepspeed(model, backend=args.backend)
        for name, batches in saved.items():
            report["compiled"][name] = one_pass(model, batches)
    for mode in ("eager", "compiled"):
        for name, r in report[mode].items():
            finite = all(math.isfinite(x) for x in r["losses"]) and math.isfinite(r["grad_norm"])
            print(f"{mode:8s} {name}: losses {[round(x, 4) for x in r['losses']]} grad norm {r['grad_norm']:.4g} "
                  f"{'finite' if finite else 'NON-FINITE'}; first non-finite layer output {r['first_nonfinite_layer']}; "
                  f"{r['n_nonfinite_grads']} of {r['n_lora_grads']} LoRA grads non-finite")
            if r["n_nonfinite_grads"]:
                print(f"         by layer: {r['nonfinite_grads_by_layer']}")
            if r.get("born_in"):
                print(f"         non-finite gradient born in: {r['born_in']}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
