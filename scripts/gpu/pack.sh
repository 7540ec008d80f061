#!/usr/bin/env bash
# Pack what a GPU session carries (scripts/gpu/README.md): Spider as one file, the vLLM wheels and
# the GGUF models as one tar cut into 48 MiB pieces (.gpucarry/big/pNN/chunk + SHA256), and these
# scripts (.gpucarry/sh). Run from the repository root after fetching .whl/ and models/.
set -euo pipefail
mkdir -p .gpucarry/sh
tar cJf .gpucarry/spider.tar.xz -C "${SPIDER_PARENT:-../shared}" spider
cp scripts/gpu/{env,host-setup,put-chunk,poll,collect}.sh .gpucarry/sh/
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cp .whl/*.whl models/*.gguf "$T"/ && tar cf "$T.tar" -C "$T" . && mv "$T.tar" "$T/big.tar"
rm -rf .gpucarry/big && mkdir -p .gpucarry/big
split -b 48M -d -a 2 "$T/big.tar" .gpucarry/big/chunk.
for c in .gpucarry/big/chunk.*; do d=$(printf '.gpucarry/big/p%02d' $((10#${c##*.} + 1))); mkdir -p "$d"; mv "$c" "$d/chunk"; done
(cd "$T" && sha256sum big.tar) > .gpucarry/big/SHA256
ls -d .gpucarry/big/p* | wc -l | xargs echo "pieces:"; [ -f .gpucarry/queue.sh ] || echo "now write .gpucarry/queue.sh (see scripts/gpu/queue-example.sh)"
