#!/usr/bin/env bash
# Two Ray nodes on one 2-GPU host (or 4-GPU host with GPUS_PER_NODE=2), trained across with NCCL,
# the worker NODE killed mid-run and brought back, then generation and evaluation spread over both
# nodes (issue 16, item 2; issue 18 with GPUS_PER_NODE=2).
#
#   node A (head)  : `ray start --head`, CUDA_VISIBLE_DEVICES=0 (0,1)   } separate raylets, node ids
#   node B (worker): `ray start --address`, CUDA_VISIBLE_DEVICES=1 (2,3) } and object stores, token auth
#
# 1. sqltrain train on Qwen2.5-Coder-0.5B / Spider: one worker per GPU, cluster.placement_strategy=
#    STRICT_SPREAD (one per node) or SPREAD with 2 GPUs per node, checkpoints on
#    cluster.storage_path ($WORK/shared/ray_results);
#    once a checkpoint exists and training has gone on, node B's process group is killed (its
#    raylet and every worker on it: the node dies, not one process), then node B is started
#    again; train.max_failures lets Ray Train wait for it and resume from the last checkpoint.
# 2. sqltrain generate with one replica per GPU on the first $GEN_LIMIT dev questions,
#    then sqltrain evaluate with its Ray tasks (evaluate.parallel_threshold=0) on both nodes.
# Prints: throughput, the resume, and on which nodes the generation actors and evaluation tasks
# ran. Logs and metrics under $OUT. Run from the repo root; needs the Qwen GGUF
# (../shared/models/get-model.sh qwen-coder-0.5b models/) and Spider ($SPIDER).
# Budget: about 6-8 minutes on 2x H200 (prepare ~1 min, train ~3 min with the kill, generate +
# evaluate ~2 min).
set -uo pipefail
OUT=${OUT:-gpu-logs/multinode}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-/tmp/sqltrain-multinode}; SHARED=$WORK/shared; mkdir -p "$SHARED"
SPIDER=${SPIDER:-$(cd ../shared/spider 2>/dev/null && pwd)}; MODEL=${MODEL:-$PWD/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}
GPN=${GPUS_PER_NODE:-1}; GPUS=$((2 * GPN))
GPUS_A=$(seq -s, 0 $((GPN - 1))); GPUS_B=$(seq -s, $GPN $((GPUS - 1)))
PLACEMENT=$([ "$GPN" = 1 ] && echo STRICT_SPREAD || echo SPREAD)
STEPS=${STEPS:-150}; SAVE=${SAVE:-40}; KILL_AT=${KILL_AT:-60}; GEN_LIMIT=${GEN_LIMIT:-256}
PORT=${PORT:-6390}; DASH=${DASH:-8275}; ADDR=127.0.0.1:$PORT
export RAY_TMPDIR=$WORK/ray RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
unset RAY_ADDRESS
mkdir -p "$RAY_TMPDIR"
RAY=(python3 -m ray.scripts.scripts)  # the `ray` CLI, also where Ray is only on PYTHONPATH (GPU bundle)

start_node() {  # name gpus extra-args...: `ray start --block` in its own session; pid in $WORK/<name>.pid
  local name=$1 gpu=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpu setsid "${RAY[@]}" start --block --node-ip-address 127.0.0.1 --num-gpus $GPN \
    --resources "{\"node_$name\": 1}" --disable-usage-stats "$@" > "$OUT/node-$name.log" 2>&1 &
  echo $! > "$WORK/$name.pid"
}
stop_node() { kill -"${2:-TERM}" -- -"$(cat "$WORK/$1.pid")" 2>/dev/null; }
wait_nodes() {  # count: until `ray status` lists that many node_* resources
  for _ in $(seq 90); do [ "$("${RAY[@]}" status --address $ADDR 2>/dev/null | grep -c 'node_')" -ge "$1" ] && return 0; sleep 2; done
  echo "nodes did not come up"; return 1
}
trap 'stop_node b; stop_node a' EXIT

start_node a $GPUS_A --head --port $PORT --dashboard-host 127.0.0.1 --dashboard-port $DASH --num-cpus $((12 * GPN))
wait_nodes 1 || exit 1
start_node b $GPUS_B --address $ADDR --num-cpus $((12 * GPN))
wait_nodes 2 || exit 1
"${RAY[@]}" status --address $ADDR > "$OUT/ray-status.txt"

CFG=configs/qwen2.5-coder-0.5b-spider.yaml
COMMON=(run_dir=$SHARED/run model.name=$MODEL model.cache_dir=$SHARED/models data.spider_dir=$SPIDER
        data.exclude=$SPIDER/database/KNOWN_GAPS.tsv linking.cache_dir=$SHARED/value_index
        cluster.address=$ADDR cluster.storage_path=$SHARED/ray_results)
python3 -m sqltrain.cli prepare --config $CFG "${COMMON[@]}" > "$OUT/prepare.log" 2>&1 || { tail -20 "$OUT/prepare.log"; exit 1; }

python3 -m sqltrain.cli train --config $CFG "${COMMON[@]}" train.num_workers=$GPUS train.cpus_per_worker=4 \
    cluster.placement_strategy=$PLACEMENT train.max_steps=$STEPS train.save_every=$SAVE train.eval_every=$SAVE \
    train.log_every=10 train.max_failures=3 > "$OUT/train.log" 2>&1 &
TRAIN=$!
METRICS=$SHARED/run/train/metrics.jsonl
last_step() { [ -f "$METRICS" ] && tail -1 "$METRICS" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["step"])' || echo 0; }
until [ "$(last_step)" -ge "$KILL_AT" ] || ! kill -0 $TRAIN 2>/dev/null; do sleep 2; done
echo "step $(last_step): killing node b (its raylet and workers)" | tee "$OUT/kill.txt"
stop_node b KILL
sleep 20
start_node b $GPUS_B --address $ADDR --num-cpus $((12 * GPN)) && wait_nodes 2 && echo "node b is back" | tee -a "$OUT/kill.txt"
wait $TRAIN; echo "train exit $?" | tee -a "$OUT/kill.txt"
cp "$METRICS" "$OUT/metrics.jsonl"
python3 - "$METRICS" <<'PY' | tee "$OUT/train-summary.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("steps", rows[0]["step"], "...", rows[-1]["step"], "| resumed_from", sorted({str(r.get("resumed_from")) for r in rows}))
print("median tokens/s (both workers, 10-step windows): %.0f" % statistics.median(r["tokens_per_s"] for r in rows))
print("final loss %.4f, dev loss %s, skipped steps %s" % (rows[-1]["loss"], rows[-1].get("dev_loss"), rows[-1]["skipped_steps"]))
PY

python3 -m sqltrain.cli generate --config $CFG "${COMMON[@]}" --adapter $SHARED/run/train/adapter \
    generate.use_gpu=true generate.num_replicas=$GPUS generate.limit=$GEN_LIMIT > "$OUT/generate.log" 2>&1; echo "generate exit $?"
python3 -m sqltrain.cli evaluate --config $CFG "${COMMON[@]}" --predictions $SHARED/run/predictions/finetuned.jsonl \
    --out $SHARED/run/eval/finetuned evaluate.parallel_threshold=0 > "$OUT/evaluate.log" 2>&1; echo "evaluate exit $?"
cp $SHARED/run/eval/finetuned/summary.json "$OUT/eval-summary.json" 2>/dev/null
python3 - "$DASH" <<'PY' | tee "$OUT/placement.txt"
# Which node ran what: Ray's state API (dead actors and finished tasks are kept for a while).
import collections, sys
from ray.util.state import list_actors, list_nodes, list_tasks
api = f"http://127.0.0.1:{sys.argv[1]}"
names = {n.node_id: n.resources_total and next((k for k in n.resources_total if k.startswith("node_")), "?")
         for n in list_nodes(address=api, detail=True)}
for kind, rows in (("actors", list_actors(address=api, detail=True, limit=10000)),
                   ("tasks", list_tasks(address=api, detail=True, limit=10000))):
    per = collections.Counter((getattr(r, "class_name", None) or r.name, names.get(r.node_id, r.node_id)) for r in rows)
    for (what, node), n in sorted(per.items()):
        if any(k in what for k in ("Generat", "Engine", "Predict", "evaluate", "execute", "RayTrainWorker")):
            print(f"{kind:<7} {what[:60]:<60} {node:<8} {n}")
PY
