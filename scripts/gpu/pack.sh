#!/usr/bin/env bash
# Pack what a GPU session carries (scripts/gpu/README.md): Spider as one file, the vLLM wheels and
# the GGUF models as one tar cut into $PIECE pieces (36 MiB by default: a piece plus the
# repository's own tracked files, ~21 MiB with docs/results, must stay under a call's 64 MiB;
# checked below) (.gpucarry/$SET/pNN/chunk + SHA256), and these
# scripts (.gpucarry/sh). Run from the repository root after fetching .whl/ and models/.
# Several sets (what the queue needs first arrives first, each with its own ready flag):
#   SET=big1 FILES=".whl/*.whl models/qwen2.5-coder-0.5b*.gguf" scripts/gpu/pack.sh
#   SET=big2 FILES="models/qwen2.5-coder-1.5b*.gguf" scripts/gpu/pack.sh
set -euo pipefail
SET=${SET:-big}; FILES=${FILES:-".whl/*.whl models/*.gguf"}; PIECE=${PIECE:-36M}
# every chunk call carries the tracked tree too: refuse pieces that would not fit beside it
tree_mib=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | awk '{print int($1 / 1048576) + 1}')
piece_mib=$(numfmt --from=iec "$PIECE" | awk '{print int($1 / 1048576)}')
if [ $((tree_mib + piece_mib)) -gt 62 ]; then
  echo "pack: ${PIECE} pieces + the ${tree_mib} MiB tracked tree exceed what a call carries (64 MiB); use PIECE=$((62 - tree_mib))M" >&2
  exit 1
fi
mkdir -p .gpucarry/sh
tar cJf .gpucarry/spider.tar.xz -C "${SPIDER_PARENT:-../shared}" spider
cp scripts/gpu/{env,host-setup,put-chunk,poll,collect,queue-lib}.sh .gpucarry/sh/
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cp $FILES "$T"/ && tar cf "$T.tar" -C "$T" . && mv "$T.tar" "$T/big.tar"
rm -rf ".gpucarry/$SET" && mkdir -p ".gpucarry/$SET"
split -b "$PIECE" -d -a 2 "$T/big.tar" ".gpucarry/$SET/chunk."
for c in .gpucarry/$SET/chunk.*; do d=$(printf ".gpucarry/$SET/p%02d" $((10#${c##*.} + 1))); mkdir -p "$d"; mv "$c" "$d/chunk"; done
(cd "$T" && sha256sum big.tar) > ".gpucarry/$SET/SHA256"
ls -d .gpucarry/$SET/p* | wc -l | xargs echo "$SET pieces:"; [ -f .gpucarry/queue.sh ] || echo "now write .gpucarry/queue.sh (see scripts/gpu/queue-example.sh)"
