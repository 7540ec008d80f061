# The queue of the fourth 2026-12-07 session (one H100): the guard's cost (in-process A/B), then the
# 0.5B README training beside the fresh-LoRA replays, the replays on its own adapter, greedy and
# execution-vote generation. Written to .gpucarry/queue.sh before call 1 (scripts/gpu/README.md).
# session 2026-12-07 (fourth): issue 11 (guard cost, non-finite op), 12/17 (vLLM stage, vote8)
source /tmp/w/env.sh
cd $W/repo
step() { local n=$1; shift; echo "=== $n start $(date +%T)"; local t=$SECONDS; "$@" > $L/$n.log 2>&1; local rc=$?; echo "=== $n rc=$rc $((SECONDS-t))s $(date +%T)"; return $rc; }
sq() { python3 -m sqltrain.cli "$@"; }
T0=$(cut -d' ' -f3 $W/t0); END=$(cat $W/end_s)
left() { [ $(( T0 + END - $(date +%s) )) -gt $1 ] || { echo "=== skip (less than $1 s left) $(date +%T)"; return 1; }; }
waitfor() { while [ ! -f $W/$1.ready ]; do sleep 3; done; echo "=== $1 ready $(date +%T)"; }
Q=configs/qwen2.5-coder-0.5b-spider.yaml; R=runs/qwen2.5-coder-0.5b-spider
MEM=generate.gpu_memory_utilization=0.35
SP=(--spider-dir ../shared/spider --split dev --exclude ../shared/spider/database/KNOWN_GAPS.tsv --no-progress)
mkdir -p $W/tok && tar xJf $W/extra/tok.tar.xz -C $W  # the Qwen tokenizer for the random-init model
# A. the guard's cost, alone on the idle GPU (in-process on/off blocks)
step guard-ab python3 benchmarks/guard_overhead.py --model random:qwen2.5-0.5b --batch 16 --seq 512 \
  --pairs 8 --block 10 --out $L/guard-ab.json model.tokenizer=$W/tok
# B. the 0.5B model: README training in the background; replay of the rebuilt batches (fresh LoRA)
waitfor big1
TRAIN=
if left 750; then step train sq pipeline --config $Q --stages prepare,train $MEM & TRAIN=$!; fi
X=$W/extra/replay-seed2
step diag-plain python3 benchmarks/diagnose_nonfinite.py $X --config $Q --eager-only --out $L/diag-plain.json
grep -q NON-FINITE $L/diag-plain.log && left 900 && step diag-fp32 python3 benchmarks/diagnose_nonfinite.py $X --config $Q --eager-only --out $L/diag-fp32.json quantization.compute_dtype=fp32
grep -q NON-FINITE $L/diag-plain.log && left 850 && step diag-eager-attn python3 benchmarks/diagnose_nonfinite.py $X --config $Q --eager-only --out $L/diag-eager-attn.json model.attn_implementation=eager
[ -n "$TRAIN" ] && wait $TRAIN; ls $R/train/nonfinite 2>/dev/null | tee $L/nonfinite-files.txt
# C. the run's own skipped batches on its trained adapter: plain, fp32, eager attention
if [ -d $R/train/nonfinite ]; then
  left 500 && step diagr-plain python3 benchmarks/diagnose_nonfinite.py $R --eager-only --out $L/diagr-plain.json
  grep -q NON-FINITE $L/diagr-plain.log && left 450 && step diagr-fp32 python3 benchmarks/diagnose_nonfinite.py $R --eager-only --out $L/diagr-fp32.json quantization.compute_dtype=fp32
  grep -q NON-FINITE $L/diagr-plain.log && left 400 && step diagr-eager-attn python3 benchmarks/diagnose_nonfinite.py $R --eager-only --out $L/diagr-eager-attn.json model.attn_implementation=eager
fi
# D. vLLM: fine-tuned greedy (README defaults), then execution_vote over 8 samples
[ -f $R/train/adapter/adapter_config.json ] || { echo '=== no adapter'; touch $W/done; exit 0; }
waitfor whl
left 240 && step gen-ft sq pipeline --config $Q --stages generate-finetuned,evaluate-finetuned
left 200 && { step gen-vote8 sq generate --config $Q --adapter $R/train/adapter --out $R/predictions/ft-vote8.jsonl \
    generate.selection=execution_vote generate.num_candidates=8 generate.temperature=0.7 &&
  step eval-vote8 sq evaluate "${SP[@]}" --predictions $R/predictions/ft-vote8.jsonl --out $R/eval/ft-vote8; }
left 120 && { step gen-cg-trunc sq generate --config $Q --adapter $R/train/adapter --out $R/predictions/ft-cg-trunc.jsonl \
    generate.vllm_compile=cudagraphs generate.vllm_stop=truncate &&
  step eval-cg-trunc sq evaluate "${SP[@]}" --predictions $R/predictions/ft-cg-trunc.jsonl --out $R/eval/ft-cg-trunc; }
echo "=== all done $(date +%T)"; touch $W/done
