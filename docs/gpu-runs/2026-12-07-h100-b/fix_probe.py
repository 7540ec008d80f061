# The candidate fix: cuDNN SDPA off + pad to a multiple of 8; all replayed batches, and timing.
import sys, glob, time, torch
sys.path.insert(0, "/tmp/w/repo/benchmarks"); sys.path.insert(0, "/tmp/w/repo")
from pathlib import Path
import diagnose_nonfinite as d
def pad8(b):
    extra = (-b["input_ids"].shape[1]) % 8
    n = b["input_ids"].shape[0]
    z = lambda t, v: torch.cat([t, torch.full((n, extra), v, dtype=t.dtype)], 1)
    return {"input_ids": z(b["input_ids"], 0), "attention_mask": z(b["attention_mask"], 0), "labels": z(b["labels"], -100)}
def chunks(x):
    return [{k: v[i:i + 8] for k, v in x.items()} for i in range(0, x["input_ids"].shape[0], 8)]
def timed(model, bs, reps=3):
    d.one_pass(model, bs); torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(reps): r = d.one_pass(model, bs)
    torch.cuda.synchronize(); return r, (time.perf_counter() - t) / reps
def sweep(tag, model, files):
    for f in files:
        raw = [c for x in torch.load(f) for c in chunks(x)]
        for mode in ["default", "fix"]:
            torch.backends.cuda.enable_cudnn_sdp(mode == "default")
            bs = raw if mode == "default" else [pad8(c) for c in raw]
            r, s = timed(model, bs)
            print(f"{tag} {Path(f).name} {mode}: seq {bs[0]['input_ids'].shape[1]} loss {sum(r['losses'])/len(r['losses']):.4f} "
                  f"grad norm {r['grad_norm']:.4g} nonfinite {r['n_nonfinite_grads']} fwd+bwd {s*1000:.0f} ms", flush=True)
    torch.backends.cuda.enable_cudnn_sdp(True)
R = "runs/qwen2.5-coder-0.5b-spider"
cfg, model = d.load_model(Path(R + "/train/adapter"))
sweep("trained", model, sorted(glob.glob(R + "/train/nonfinite/*.pt")) + sorted(glob.glob("/tmp/w/extra/replay-seed2/train/nonfinite/*.pt")))
