# second queue of the session: the same after the fix that makes model.name absolute at load time
# (the first tune's trials ran in Ray Tune's trial folders and could not find models/...gguf)
source /tmp/w/queue-lib.sh
T=configs/tune-qwen2.5-coder-0.5b-ex.yaml; RT=runs/tune-qwen2.5-coder-0.5b-ex
step prepare2 sq prepare --config $T
left 900 && step tune sq tune --config $T tune.num_samples=2
nvidia-smi --query-gpu=memory.used --format=csv >> $L/gpu.txt
[ -f $RT/tune/best.yaml ] && cp $RT/tune/best.yaml $L/best.yaml && left 430 && \
  step best sq pipeline --config $RT/tune/best.yaml --stages train,generate-finetuned,evaluate-finetuned
echo "=== all done $(date +%T)"; touch $W/done
