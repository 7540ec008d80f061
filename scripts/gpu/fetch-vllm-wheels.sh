#!/usr/bin/env bash
# Download the wheels that let the GPU host (Python 3.12, torch 2.11.0+cu130, transformers 5.17,
# no package index) run sqltrain's vllm engine: `from vllm import LLM, SamplingParams;
# from vllm.lora.request import LoRARequest`, then an offline LLM with LoRA, bf16, on one GPU.
#
#   scripts/gpu/fetch-vllm-wheels.sh DEST        (e.g. .whl; never commit wheels)
#
# On the host, beside the sqltrain bundle (../shared/gpu/make-bundle.sh: Ray, pydantic, sqlglot):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site2 .whl/*.whl
#   export PYTHONPATH=/tmp/site2:/tmp/site:$PWD
#
# The list is the smallest set found by importing vllm 0.25.0 in a venv holding only the host's
# packages (docs/benchmarks.md, "vLLM on the GPU host"): vllm's own requirements also name
# server and multimodal packages (fastapi extras, anthropic, mcp, opentelemetry, torchcodec,
# PyNvVideoCodec...) and kernel libraries for other GPUs or features (flashinfer, tilelang,
# quack-kernels, nvidia-cutlass-dsl, humming-kernels, tokenspeed-mla) that this path never
# imports. What it does import at module level, and the host lacks, is below, at versions
# inside vllm 0.25.0's requirements, with one deliberate exception: vllm pins
# apache-tvm-ffi==0.1.9 (for flashinfer), which would force xgrammar 0.2.5.post1, a 48 MB
# wheel (it ships a 70 MB static library); xgrammar 0.2.8 (1.3 MB) needs tvm-ffi >= 0.1.11.
# vllm itself never imports tvm_ffi on this path, and imports xgrammar only for type names
# unless a request asks for structured output. Not included, on purpose:
#   flashinfer-python/-cubin 0.6.13: optional on Hopper. Attention there is FlashAttention 3
#     (built into the vllm wheel, first in vllm/platforms/cuda.py's priorities for SM 9.x);
#     LoRA runs Triton kernels; vLLM imports flashinfer only for its top-k/top-p sampler, which
#     sqltrain turns off when flashinfer is absent (VLLM_USE_FLASHINFER_SAMPLER=0).
# Sizes when written (2026-11-29): 16 wheels, 264.6 MB in all: vllm 250.1 MB, the other 15
# together 14.5 MB. The vllm wheel is larger than one device call carries (64 MiB): cut it with
# ../shared/gpu/split-for-carry.sh and re-join it on the host before installing.
set -euo pipefail
DEST=${1:?usage: fetch-vllm-wheels.sh DEST}
mkdir -p "$DEST"
WHEELS=(
  vllm==0.25.0                       # 250 MB: the engine, its CUDA 13 kernels, FlashAttention 2/3
  xgrammar==0.2.8                    # imported by vllm.v1.request (structured output types)
  apache-tvm-ffi==0.1.11             # xgrammar's runtime (see above)
  llguidance==1.7.6                  # vllm.v1.structured_output
  openai==3.57.0                     # openai.types, imported by vllm's tool/reasoning modules
  httpx2==2.16.2                     # openai's HTTP client (imported by `import openai`)
  sniffio==1.3.1                     # openai
  openai-harmony==0.0.8              # vllm.entrypoints.mcp (imported by vllm.config)
  fastapi==0.136.3                   # vllm.entrypoints.pooling (imported by vllm.entrypoints.llm)
  starlette==1.10.0                  # fastapi
  partial-json-parser==0.2.1.1.post7 # vllm tool parsers (imported by vllm.entrypoints.llm)
  pyzmq==27.3.0                      # vllm.v1.engine.core_client
  msgspec==0.23.0                    # vllm.v1 serialization
  cbor2==6.3.0                       # vllm.utils.hashing (prefix-cache keys)
  pybase64==1.5.1                    # vllm multimodal/serial utils
  cachetools==8.0.2                  # vllm.transformers_utils
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_35_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$DEST" "${WHEELS[@]}"
ls -la "$DEST"
du -ch "$DEST"/*.whl | tail -1
