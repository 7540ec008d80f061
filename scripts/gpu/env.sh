# sourced by every script on the GPU host
export W=/tmp/w L=/tmp/w/logs
export PYTHONPATH=/tmp/site2:/tmp/site:/tmp/w/repo TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1
