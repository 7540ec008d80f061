source /tmp/w/env.sh
cd $W/repo && tar czf $OUT/results.tgz --exclude='*.safetensors' --exclude='*.parquet' \
  --exclude='*/checkpoints' --exclude='*/data' --exclude='*/ray' --exclude='*.bin' -C $W logs -C $W/repo runs 2>/dev/null
ls -la $OUT
