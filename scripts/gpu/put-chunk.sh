# one piece of big.tar per call; the last call (LAST=1) joins, checks and installs (scripts/gpu/README.md)
source .gpucarry/sh/env.sh
cp .gpucarry/big/$1/chunk $W/parts/$1 && echo "got $1 $(du -sh $W/parts | cut -f1)"
if [ -n "$LAST" ]; then
  set -e
  cat $W/parts/p* > $W/big.tar && rm -rf $W/parts
  cp .gpucarry/big/SHA256 $W/ && (cd $W && sha256sum -c SHA256)
  mkdir -p $W/big && tar xf $W/big.tar -C $W/big && rm $W/big.tar
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site2 $W/big/*.whl
  mv $W/big/*.gguf $W/repo/models/ && ls -la $W/repo/models
  python3 -c "import vllm; print('vllm', vllm.__version__)"
  touch $W/big.ready
  cat $L/queue.log
fi
