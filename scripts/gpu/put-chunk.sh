# one piece of a set's tar per call (SET=big by default); the last call (LAST=1) joins, checks,
# installs the wheels, moves the models and touches $W/$SET.ready (scripts/gpu/README.md)
source .gpucarry/sh/env.sh
SET=${SET:-big}; P=$W/parts-$SET
mkdir -p $P && cp .gpucarry/$SET/$1/chunk $P/$1 && echo "got $SET/$1 $(du -sh $P | cut -f1)"
if [ -n "$LAST" ]; then
  set -e
  cat $P/p* > $W/$SET.tar
  cp .gpucarry/$SET/SHA256 $W/$SET.sha256 && (cd $W && sed "s/big.tar/$SET.tar/" $SET.sha256 | sha256sum -c)
  rm -rf $P  # only once the set checks out: a refused piece can then be sent again, then LAST again
  mkdir -p $W/$SET && tar xf $W/$SET.tar -C $W/$SET && rm $W/$SET.tar
  if ls $W/$SET/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site2 $W/$SET/*.whl
    python3 -c "import vllm; print('vllm', vllm.__version__)"
  fi
  mv $W/$SET/*.gguf $W/repo/models/ 2>/dev/null || true  # a wheels-only set has none (set -e)
  ls -la $W/repo/models
  touch $W/$SET.ready
  cat $L/queue.log
fi
