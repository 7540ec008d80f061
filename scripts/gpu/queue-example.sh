# The queue of the 2026-12-07 session (one H100): the guard on/off runs, then the README Spider runs
# of seed 2 and SmolLM2 sharing the GPU, then vLLM variants of the adapter and the non-finite replay.
# the session's GPU work, in order; each step's log in $L/<name>.log, the timeline in queue.log
source /tmp/w/env.sh
cd $W/repo
step() { local n=$1; shift; echo "=== $n start $(date +%T)"; local t=$SECONDS; "$@" > $L/$n.log 2>&1; local rc=$?; echo "=== $n rc=$rc $((SECONDS-t))s $(date +%T)"; return $rc; }
sq() { python3 -m sqltrain.cli "$@"; }
# A. the guard's cost, alone on the GPU: on / off / off / on
G=(python3 benchmarks/train_throughput.py --only sqltrain --model random:qwen2.5-0.5b --batch 16 --seq 512 --steps 40)
TOK=model.tokenizer=$W/tok
step guard-on-a "${G[@]}" --out $L/guard-on-a.json $TOK
step guard-off-a "${G[@]}" --out $L/guard-off-a.json $TOK train.skip_nonfinite=false
step guard-off-b "${G[@]}" --out $L/guard-off-b.json $TOK train.skip_nonfinite=false
step guard-on-b "${G[@]}" --out $L/guard-on-b.json $TOK
# B. weights and vLLM arrive by the chunk calls
while [ ! -f $W/big.ready ]; do sleep 5; done
# C. the README's commands, two runs sharing the one GPU (each vLLM engine gets 0.35 of its memory)
MEM=generate.gpu_memory_utilization=0.35
Q=configs/qwen2.5-coder-0.5b-spider.yaml; R=runs/qwen2.5-coder-0.5b-spider-seed2
T0=$(cut -d' ' -f3 $W/t0); late() { [ $(( $(date +%s) - T0 )) -gt ${DEADLINE:-1450} ]; }
combo() {
  local comp=$1 stop=$2
  late && { echo "=== skip $comp-$stop (deadline)"; return; }
  step gen-$comp-$stop sq generate --config $Q --adapter $R/train/adapter --out $R/predictions/ft-$comp-$stop.jsonl \
    run_dir=$R train.seed=2 $MEM generate.vllm_compile=$comp generate.vllm_stop=$stop
  step eval-$comp-$stop sq evaluate --spider-dir ../shared/spider --split dev --predictions $R/predictions/ft-$comp-$stop.jsonl \
    --out $R/eval/ft-$comp-$stop --exclude ../shared/spider/database/KNOWN_GAPS.tsv --no-progress
}
qwen() {
  step qwen-seed2 sq pipeline --config $Q run_dir=$R train.seed=2 $MEM || return
  combo cudagraphs truncate; combo eager logits
  [ -d $R/train/nonfinite ] && ! late && step diagnose python3 benchmarks/diagnose_nonfinite.py $R --out $L/diagnose-seed2.json
  combo cudagraphs logits; combo eager truncate; combo full truncate
}
qwen &
step smollm2 sq pipeline --config configs/smollm2-135m-spider-gpu.yaml $MEM &
wait
echo "=== all done $(date +%T)"; touch $W/done
