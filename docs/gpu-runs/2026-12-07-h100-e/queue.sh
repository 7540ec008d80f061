# session 2026-12-07 (seventh): issue 11's second seed with today's defaults (the README command as
# written), then issue 17's first Qwen2.5-Coder-1.5B run (base and fine-tuned, greedy)
source /tmp/w/env.sh
cd $W/repo
step() { local n=$1; shift; echo "=== $n start $(date +%T)"; local t=$SECONDS; "$@" > $L/$n.log 2>&1; local rc=$?; echo "=== $n rc=$rc $((SECONDS-t))s $(date +%T)"; return $rc; }
sq() { python3 -m sqltrain.cli "$@"; }
T0=$(cut -d' ' -f3 $W/t0); END=$(cat $W/end_s)
left() { [ $(( T0 + END - $(date +%s) )) -gt $1 ] || { echo "=== skip (less than $1 s left) $(date +%T)"; return 1; }; }
waitfor() { while [ ! -f $W/$1.ready ]; do sleep 3; done; echo "=== $1 ready $(date +%T)"; }
Q=configs/qwen2.5-coder-0.5b-spider.yaml; R2=runs/qwen2.5-coder-0.5b-spider-seed2
Q15=configs/qwen2.5-coder-1.5b-spider.yaml; R15=runs/qwen2.5-coder-1.5b-spider
git log -1 --format='%H %s' > $L/commit.txt 2>/dev/null; git diff --stat >> $L/commit.txt 2>/dev/null
# A. the README's second-seed command; prepare+train first (vLLM must be installed before generate)
waitfor big1
left 600 && step seed2-train sq pipeline --config $Q --stages prepare,train run_dir=$R2 train.seed=2
waitfor whl
[ -f $R2/train/adapter/adapter_config.json ] && left 200 && step seed2-rest sq pipeline --config $Q run_dir=$R2 train.seed=2
# B. Qwen2.5-Coder-1.5B: the committed config, as the README's 0.5B command
waitfor big3
left 900 && step q15-train sq pipeline --config $Q15 --stages prepare,train
[ -f $R15/train/adapter/adapter_config.json ] && left 150 && step q15-rest sq pipeline --config $Q15
# C. without a trained adapter, at least the 1.5B base zero-shot with sqltrain's prompt
[ -f $R15/eval/base/summary.json ] || { left 120 && step q15-base sq pipeline --config $Q15 --stages prepare,generate-base,evaluate-base; }
echo "=== all done $(date +%T)"; touch $W/done
