"""Replay the batches of training steps that were skipped for a non-finite gradient norm, eager
and compiled, and say where the first inf/NaN appears.

The worker saves the micro batches of the first skipped steps under
RUN_DIR/train/nonfinite/step-<N>-rank-<R>.pt. This script loads the base model as the run trained
it (the adapter's sqltrain_config.yaml: same quantization and dtype), puts the adapter's LoRA
weights on it as trainable bf16 tensors (as DeepSpeed held them), and runs forward + backward on
each saved batch twice: eager, then with the run's regional torch.compile. For each pass it
reports the loss, the global gradient norm (as clipping computes it), the first decoder layer
whose output is not finite, and the LoRA tensors with non-finite gradients.

The adapter is a later or earlier checkpoint than the weights at the skipped step, so a batch
that does not reproduce is not proof of innocence; one that does names its layer.

GPU host, from the repository root:
    python benchmarks/diagnose_nonfinite.py RUN_DIR [--adapter DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_model(adapter: Path):
    import torch
    import yaml
    from peft import PeftModel

    from sqltrain.config import config_from_dict
    from sqltrain.model.loading import load_base_model

    cfg = config_from_dict(yaml.safe_load((adapter / "sqltrain_config.yaml").read_text()))
    device_map = {"": 0} if torch.cuda.is_available() else None
    model = PeftModel.from_pretrained(load_base_model(cfg, device_map=device_map), str(adapter), is_trainable=True)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.bfloat16)  # DeepSpeed bf16 keeps the trainable module weights in bf16
    model.config.use_cache = False
    return cfg, model


def decoder_layers(model):
    inner = model.base_model.model.model
    return list(inner.layers)


def one_pass(model, batches: list[dict]) -> dict:
    """Forward + backward over the step's micro batches; where things stop being finite."""
    import torch

    finite_out: list = []
    hooks = [layer.register_forward_hook(lambda m, a, out, i=i: finite_out.append(
        (i, torch.isfinite(out[0] if isinstance(out, tuple) else out).all())))
        for i, layer in enumerate(decoder_layers(model))]
    model.zero_grad(set_to_none=True)
    losses = []
    try:
        for b in batches:
            batch = {k: v.to(model.device) for k, v in b.items()}
            loss = model(**batch).loss / len(batches)
            loss.backward()
            losses.append(float(loss) * len(batches))
    finally:
        for h in hooks:
            h.remove()
    bad_layers = sorted({i for i, ok in finite_out if not bool(ok)})
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads.values()]))
    bad_grads = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    return {"losses": losses, "grad_norm": float(norm), "first_nonfinite_layer": bad_layers[0] if bad_layers else None,
            "nonfinite_layers": bad_layers, "nonfinite_grads": bad_grads[:10], "n_nonfinite_grads": len(bad_grads)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--adapter", help="adapter dir (default RUN_DIR/train/adapter)")
    p.add_argument("--out", help="write the report as JSON here too")
    p.add_argument("--backend", default="inductor", help="torch.compile backend of the compiled pass")
    args = p.parse_args(argv)
    import torch
    from accelerate.utils import compile_regions_deepspeed

    run = Path(args.run_dir)
    files = sorted((run / "train" / "nonfinite").glob("step-*-rank-*.pt"))
    if not files:
        print(f"no saved batches under {run / 'train' / 'nonfinite'}: no step was skipped")
        return 0
    cfg, model = load_model(Path(args.adapter or run / "train" / "adapter"))
    saved = {f.name: torch.load(f) for f in files}
    report = {"eager": {}, "compiled": {}}
    for name, batches in saved.items():
        report["eager"][name] = one_pass(model, batches) | {"shapes": [list(b["input_ids"].shape) for b in batches]}
    torch._dynamo.config.recompile_limit = 64
    compile_regions_deepspeed(model, backend=args.backend)
    for name, batches in saved.items():
        report["compiled"][name] = one_pass(model, batches)
    for mode, rows in report.items():
        for name, r in rows.items():
            finite = all(math.isfinite(x) for x in r["losses"]) and math.isfinite(r["grad_norm"])
            print(f"{mode:8s} {name}: losses {[round(x, 4) for x in r['losses']]} grad norm {r['grad_norm']:.4g} "
                  f"{'finite' if finite else 'NON-FINITE'}; first non-finite layer {r['first_nonfinite_layer']}; "
                  f"{r['n_nonfinite_grads']} non-finite LoRA grads {r['nonfinite_grads'][:3]}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
