# Which SDPA backend / sequence length makes the replayed batches' gradients non-finite?
import sys, glob, json, torch
sys.path.insert(0, "/tmp/w/repo/benchmarks"); sys.path.insert(0, "/tmp/w/repo")
from pathlib import Path
from torch.nn.attention import sdpa_kernel, SDPBackend
import diagnose_nonfinite as d
cfg, model = d.fresh_lora_model(Path("configs/qwen2.5-coder-0.5b-spider.yaml"))
X = "/tmp/w/extra/replay-seed2/train/nonfinite/"
def padded(b, extra):
    n = b["input_ids"].shape[0]
    z = lambda t, v: torch.cat([t, torch.full((n, extra), v, dtype=t.dtype)], 1)
    return {"input_ids": z(b["input_ids"], 0), "attention_mask": z(b["attention_mask"], 0), "labels": z(b["labels"], -100)}
def run(tag, batches, backends=None):
    try:
        if backends:
            with sdpa_kernel(backends):
                r = d.one_pass(model, batches)
        else:
            r = d.one_pass(model, batches)
        print(f"{tag}: seq {batches[0]['input_ids'].shape[1]} loss {r['losses'][0]:.4f} grad norm {r['grad_norm']:.4g} nonfinite grads {r['n_nonfinite_grads']}", flush=True)
    except Exception as e:
        print(f"{tag}: error {type(e).__name__}: {str(e)[:200]}", flush=True)
for name in ["step-359", "step-395", "step-358", "step-482"]:
    b = [{k: v[i:i + 4] for k, v in x.items()} for x in torch.load(X + name + "-rank-0.pt") for i in range(0, 16, 4)]
    L = b[0]["input_ids"].shape[1]
    run(f"{name} default", b)
    for bk in ["MATH", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"]:
        run(f"{name} {bk}", b, [getattr(SDPBackend, bk)])
    for extra in [1, 8, (-L) % 64 or 64]:
        run(f"{name} default +{extra} pad", [padded(x, extra) for x in b])
