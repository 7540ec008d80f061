#!/usr/bin/env bash
# GPU checks of the training stage (issue 5), run on a host with >= WORKERS GPUs (default 2):
#   1. QLoRA (NF4, bf16 storage) + DeepSpeed ZeRO-2 on WORKERS GPU workers, compiled (train.compile=true)
#   2. the same with ZeRO-3 (train.compile=auto: not compiled)
#   3. resume on GPU: a worker is killed after a checkpoint (SQLTRAIN_FAIL_AT_STEP) and the run resumes
#   4. run 1 again with train.compile=false: its loss curve should follow run 1's (up to dropout RNG and rounding)
# Model: a random-init model of a real architecture (MODEL, default random:qwen2.5-0.5b) with the
# matching tokenizer dir (TOKENIZER); data: the embedded mini benchmark. Logs go to $OUT (or ./gpu-logs).
set -uo pipefail
OUT=${OUT:-gpu-logs}; mkdir -p "$OUT"
MODEL=${MODEL:-random:qwen2.5-0.5b}; TOKENIZER=${TOKENIZER:?tokenizer dir}
RUN=${RUN:-/tmp/sqltrain-gpu}; WORKERS=${WORKERS:-2}
COMMON=(data.exclude=null model.name=$MODEL model.tokenizer=$TOKENIZER model.cache_dir=$RUN/models data.spider_dir=mini
        linking.cache_dir=$RUN/vi quantization.method=nf4 quantization.quant_storage=bf16 model.dtype=bf16
        train.use_gpu=true train.num_workers=$WORKERS train.cpus_per_worker=4 train.micro_batch_size=16
        train.max_steps=40 train.log_every=5 train.eval_every=20 train.save_every=20 train.eval_examples=64)
sqltrain() { python3 -m sqltrain.cli "$@"; }
sqltrain prepare --config configs/smollm2-gpu.yaml run_dir=$RUN/z2 "${COMMON[@]}" > "$OUT/prepare.log" 2>&1 || { tail -30 "$OUT/prepare.log"; exit 1; }
cp -r $RUN/z2/data $RUN/z3-data
for stage in 2 3; do
  [ $stage = 3 ] && { mkdir -p $RUN/z3 && cp -r $RUN/z3-data $RUN/z3/data; }
  python3 -m sqltrain.cli train --config configs/smollm2-gpu.yaml run_dir=$RUN/z$stage "${COMMON[@]}" \
      deepspeed.stage=$stage $([ $stage = 2 ] && echo train.compile=true) > "$OUT/train-zero$stage.log" 2>&1
  echo "ZeRO-$stage exit $?"; grep -E '"step": (5|20|40),' $RUN/z$stage/train/metrics.jsonl | cut -c1-220
  ls $RUN/z$stage/train/adapter
done
mkdir -p $RUN/resume && cp -r $RUN/z3-data $RUN/resume/data
SQLTRAIN_FAIL_AT_STEP=25 python3 -m sqltrain.cli train --config configs/smollm2-gpu.yaml run_dir=$RUN/resume "${COMMON[@]}" \
    deepspeed.stage=2 train.compile=true train.max_failures=1 > "$OUT/train-resume.log" 2>&1
echo "resume exit $?"; python3 - "$RUN/resume/train/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("steps", [r["step"] for r in rows][:3], "...", rows[-1]["step"], "resumed_from", sorted({str(r.get("resumed_from")) for r in rows}))
PY
mkdir -p $RUN/eager && cp -r $RUN/z3-data $RUN/eager/data
python3 -m sqltrain.cli train --config configs/smollm2-gpu.yaml run_dir=$RUN/eager "${COMMON[@]}" \
    deepspeed.stage=2 train.compile=false > "$OUT/train-eager.log" 2>&1
echo "eager exit $?"; python3 - "$RUN/z2/train/metrics.jsonl" "$RUN/eager/train/metrics.jsonl" <<'PY'
import json, sys
compiled, eager = ([json.loads(l) for l in open(f)] for f in sys.argv[1:])
for c, e in zip(compiled, eager):
    print(f"step {c['step']:>3}  loss compiled {c['loss']:.4f}  eager {e['loss']:.4f}  "
          f"tokens/s compiled {c['tokens_per_s']:.0f}  eager {e['tokens_per_s']:.0f}")
PY
cp $RUN/eager/train/metrics.jsonl "$OUT/metrics-eager.jsonl"
cp $RUN/z2/train/metrics.jsonl "$OUT/metrics-zero2.jsonl"; cp $RUN/z3/train/metrics.jsonl "$OUT/metrics-zero3.jsonl"; cp $RUN/resume/train/metrics.jsonl "$OUT/metrics-resume.jsonl"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpus.txt"
