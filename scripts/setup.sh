#!/usr/bin/env bash
# One-time (and idempotent) setup: a virtualenv in .venv with PyTorch (CPU),
# ONNX Runtime's C++ headers, and w2sd-runtime with its export/test extras.
#
# Environment knobs:
#   PYTHON            interpreter to build the venv from (default: python3)
#   W2SD_VENV         venv location (default: .venv in the repo)
#   W2SD_TORCH_SPEC   torch requirement (default: torch==2.13.0, the CPU build)
#   ORT_INCLUDE_DIR   use these ONNX Runtime headers instead of fetching them
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
venv=${W2SD_VENV:-$repo/.venv}
py=${PYTHON:-python3}

log() { echo "setup: $*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtualenv $venv"
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  log "installing ${W2SD_TORCH_SPEC:-torch==2.13.0}"
  "${pip[@]}" "${W2SD_TORCH_SPEC:-torch==2.13.0}"
fi

if [ -z "${ORT_INCLUDE_DIR:-}" ] && [ ! -f /usr/include/onnxruntime/onnxruntime_cxx_api.h ] \
    && [ ! -f "$repo/build/ort-headers/include/onnxruntime/onnxruntime_cxx_api.h" ]; then
  log "fetching ONNX Runtime C/C++ headers"
  bash scripts/fetch_ort_headers.sh "$repo/build/ort-headers" >/dev/null
fi

# Reinstall only when a source file changed since the last install.
stamp=$venv/.w2sd-installed
if [ ! -f "$stamp" ] || [ -n "$(find csrc python export engines CMakeLists.txt pyproject.toml \
    -newer "$stamp" -type f 2>/dev/null | head -n 1)" ]; then
  log "building and installing w2sd-runtime (C++ extension) into $venv"
  "${pip[@]}" ".[test]"
  touch "$stamp"
fi
log "ready: $venv/bin/w2sd"
