# session 2026-12-07 (sixth): issue 11's remaining README rows with today's defaults (SmolLM2, Qwen seed 2),
# each trained alone on the GPU; the guard's cost from the GPU timeline while the weights arrive.
source /tmp/w/env.sh
cd $W/repo
step() { local n=$1; shift; echo "=== $n start $(date +%T)"; local t=$SECONDS; "$@" > $L/$n.log 2>&1; local rc=$?; echo "=== $n rc=$rc $((SECONDS-t))s $(date +%T)"; return $rc; }
sq() { python3 -m sqltrain.cli "$@"; }
T0=$(cut -d' ' -f3 $W/t0); END=$(cat $W/end_s)
left() { [ $(( T0 + END - $(date +%s) )) -gt $1 ] || { echo "=== skip (less than $1 s left) $(date +%T)"; return 1; }; }
waitfor() { while [ ! -f $W/$1.ready ]; do sleep 3; done; echo "=== $1 ready $(date +%T)"; }
Q=configs/qwen2.5-coder-0.5b-spider.yaml; S=configs/smollm2-135m-spider-gpu.yaml
R2=runs/qwen2.5-coder-0.5b-spider-seed2; Q2=(run_dir=$R2 train.seed=2)
SP=(--spider-dir ../shared/spider --split dev --exclude ../shared/spider/database/KNOWN_GAPS.tsv --no-progress)
git log -1 --format='%H %s' > $L/commit.txt 2>/dev/null; git status --short >> $L/commit.txt 2>/dev/null
# A. the guard's cost as GPU idle time (kernel timeline), the README model's size, while the weights arrive
step guard-prof-0.5b python3 benchmarks/guard_overhead.py --model random:qwen2.5-0.5b --batch 16 --seq 512 \
  --pairs 2 --block 8 --profile-rounds 4 --out $L/guard-prof-0.5b.json model.tokenizer=$W/tok
# B. the README's commands with today's defaults, one run at a time on the GPU
waitfor big2
left 900 && step train-smol sq pipeline --config $S --stages prepare,train
waitfor big1
left 560 && step train-seed2 sq pipeline --config $Q --stages prepare,train "${Q2[@]}"
waitfor whl
left 260 && step gen-smol sq pipeline --config $S --stages generate-base,generate-finetuned,evaluate-base,evaluate-finetuned,compare,report
left 150 && step gen-seed2 sq pipeline --config $Q --stages generate-base,generate-finetuned,evaluate-base,evaluate-finetuned,compare,report "${Q2[@]}"
# C. execution vote on the seed-2 adapter (the spread of the vote gain over seeds)
left 110 && [ -f $R2/train/adapter/adapter_config.json ] && { step gen-vote8-seed2 sq generate --config $Q "${Q2[@]}" --adapter $R2/train/adapter \
    --out $R2/predictions/ft-vote8.jsonl generate.selection=execution_vote generate.num_candidates=8 generate.temperature=0.7 &&
  step eval-vote8-seed2 sq evaluate "${SP[@]}" --predictions $R2/predictions/ft-vote8.jsonl --out $R2/eval/ft-vote8; }
echo "=== all done $(date +%T)"; touch $W/done
