# wait up to $1 s (or until the queue is done), then bring logs and results back in $OUT
source /tmp/w/env.sh
end=$((SECONDS + $1))
while [ $SECONDS -lt $end ] && [ ! -f $W/done ]; do sleep 10; done
cat $L/queue.log; echo; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
for f in $W/repo/runs/*/train/metrics.jsonl; do [ -f $f ] && echo "$f: $(tail -n 1 $f | cut -c1-200)"; done
bash $W/collect.sh
