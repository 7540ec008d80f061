# session 2026-12-07 (fifth): issue 11 (README 0.5B with the flipped defaults: cuDNN SDPA off, pad 8),
# the fix's step cost, issue 12 (14 CUDA graphs, auto = graphs for greedy adapter runs), issue 17 (vote8)
source /tmp/w/queue-lib.sh  # env, cd to the repo copy, step / sq / left / waitfor
Q=configs/qwen2.5-coder-0.5b-spider.yaml; R=runs/qwen2.5-coder-0.5b-spider
SP=(--spider-dir ../shared/spider --split dev --exclude ../shared/spider/database/KNOWN_GAPS.tsv --no-progress)
mkdir -p $W/tok && tar xJf $W/extra/tok.tar.xz -C $W  # the Qwen tokenizer for the random-init model
# A. the fix's cost per step (cuDNN allowed + pad 1 vs cuDNN off + pad 8), idle GPU, while the weights arrive
step attn-ab python3 benchmarks/attention_ab.py --model random:qwen2.5-0.5b --batch 16 --seq 512 --min-seq 256 \
  --pairs 8 --block 8 --out $L/attn-ab.json model.tokenizer=$W/tok
# A2. the guard's cost where the step is GPU-bound (the 0.5B step is launch-bound: +-4% resolution)
left 1100 && step guard-ab-1.5b python3 benchmarks/guard_overhead.py --model random:qwen2.5-1.5b --batch 8 --seq 1024 \
  --pairs 8 --block 6 --out $L/guard-ab-1.5b.json model.tokenizer=$W/tok
# B. the README's command with the committed defaults (train first; vLLM must be installed before generate)
waitfor big1
left 700 && step train sq pipeline --config $Q --stages prepare,train
[ -f $R/train/adapter/adapter_config.json ] || { echo '=== no adapter'; touch $W/done; exit 0; }
waitfor whl
left 260 && step gen-eval sq pipeline --config $Q --stages generate-base,generate-finetuned,evaluate-base,evaluate-finetuned,compare,report
# C. the same adapter decoded eager (the old auto choice for 1026 greedy answers): isolates the graphs
left 200 && { step gen-eager sq generate --config $Q --adapter $R/train/adapter --out $R/predictions/ft-eager.jsonl generate.vllm_compile=eager &&
  step eval-eager sq evaluate "${SP[@]}" --predictions $R/predictions/ft-eager.jsonl --out $R/eval/ft-eager; }
# D. execution vote over 8 samples on this adapter
left 170 && { step gen-vote8 sq generate --config $Q --adapter $R/train/adapter --out $R/predictions/ft-vote8.jsonl \
    generate.selection=execution_vote generate.num_candidates=8 generate.temperature=0.7 &&
  step eval-vote8 sq evaluate "${SP[@]}" --predictions $R/predictions/ft-vote8.jsonl --out $R/eval/ft-vote8; }
# E. the base model with the 14 graphs (auto keeps base runs eager: is that still right?)
left 110 && { step gen-base-cg sq generate --config $Q --out $R/predictions/base-cg.jsonl generate.vllm_compile=cudagraphs &&
  step eval-base-cg sq evaluate "${SP[@]}" --predictions $R/predictions/base-cg.jsonl --out $R/eval/base-cg; }
echo "=== all done $(date +%T)"; touch $W/done
