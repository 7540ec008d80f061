# session 2026-12-08 (eighth), second machine (the first went back while a bug was fixed, with
# the trained trials): `sqltrain tune` with tune.metric=ex end to end on the GPU, trials shortened
# to 160 steps to fit what was left of the session, then best.yaml through `sqltrain pipeline`
source /tmp/w/queue-lib.sh
T=configs/tune-qwen2.5-coder-0.5b-ex.yaml; RT=runs/tune-qwen2.5-coder-0.5b-ex
S=(train.max_steps=160 train.eval_every=80 train.save_every=80)
waitfor big1
step prepare sq prepare --config $T
waitfor whl
step tune sq tune --config $T tune.num_samples=2 "${S[@]}"
[ -f $RT/tune/best.yaml ] && cp $RT/tune/best.yaml $L/best.yaml && left 170 && \
  step best sq pipeline --config $RT/tune/best.yaml --stages train,generate-finetuned,evaluate-finetuned
echo "=== all done $(date +%T)"; touch $W/done
