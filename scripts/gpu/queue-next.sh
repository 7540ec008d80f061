# Plan for the next session with one GPU (~1,500 s of queue after set-up; costs measured on an
# H100 on 2026-12-08, docs/benchmarks.md "Tune on execution accuracy"): issue 17's complete
# Tune-on-EX run with the committed config, then its best.yaml through `sqltrain pipeline`.
# Needs the 0.5B GGUF (SET=big1) and the vLLM wheels (SET=whl). Copy to .gpucarry/queue.sh.
source /tmp/w/queue-lib.sh  # env, cd to the repo copy, step / sq / left / waitfor
T=configs/tune-qwen2.5-coder-0.5b-ex.yaml; RT=runs/tune-qwen2.5-coder-0.5b-ex
waitfor big1
step prepare sq prepare --config $T                          # ~90 s
waitfor whl                                                  # the trials' scoring generates with vLLM
left 900 && step tune sq tune --config $T                    # 4 trials, 2 at a time: ~11 min + ~2 min scoring
cp $RT/tune/results.json $RT/tune/best.yaml $L/ 2>/dev/null
# the winner trained again from scratch in the base run_dir, scored on validation (same seed: its
# EX should land near the trial's)
[ -f $RT/tune/best.yaml ] && left 420 && \
  step best sq pipeline --config $RT/tune/best.yaml --stages train,generate-finetuned,evaluate-finetuned
left 120 && step best-base sq pipeline --config $RT/tune/best.yaml --stages generate-base,evaluate-base,compare,report
echo "=== all done $(date +%T)"; touch $W/done
