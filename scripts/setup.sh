#!/usr/bin/env bash
# One-time (and idempotent) setup: a virtualenv in .venv with PyTorch (CPU),
# ONNX Runtime's C++ headers, and w2sd-runtime with its export/test extras.
#
# Environment knobs:
#   PYTHON            interpreter to build the venv from (default: python3)
#   W2SD_VENV         venv location (default: .venv in the repo)
#   W2SD_TORCH_SPEC   torch requirement (default: torch==2.13.0, the CPU build)
#   ORT_INCLUDE_DIR   use these ONNX Runtime headers instead of fetching them
#   W2SD_CUDA         1: build the CUDA kernels/backend, 0: don't, auto (default): if nvcc is found
#   W2SD_ORT          ONNX Runtime flavour, an extra of the package: cpu (default) or gpu
#   W2SD_OPENVINO     1 (default): also install the [openvino] extra (the openvino wheel: its
#                     C header and library for --backend openvino)
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

cuda=${W2SD_CUDA:-auto}
if [ "$cuda" = auto ]; then
  if command -v nvcc >/dev/null 2>&1; then cuda=1; else cuda=0; fi
fi
build_args=()
if [ "$cuda" = 1 ]; then
  build_args=(--config-settings=cmake.define.W2SD_WITH_CUDA=ON)
  # cuobjdump lets the tests check the device code of every architecture.
  "$venv/bin/python" -c "import nvidia.cu13" 2>/dev/null || "${pip[@]}" nvidia-cuda-cuobjdump
fi

ort=${W2SD_ORT:-cpu}
case "$ort" in cpu | gpu) ;; *) log "W2SD_ORT must be cpu or gpu, got '$ort'"; exit 2 ;; esac
extras="$ort,test,lint"
ov_spec=openvino==2026.4.1
if [ "${W2SD_OPENVINO:-1}" = 1 ]; then
  # First, so that the C++ build finds OpenVINO's C header in the installed wheel.
  if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('openvino') == '${ov_spec#*==}'" 2>/dev/null; then
    log "installing $ov_spec (--backend openvino)"
    "${pip[@]}" "$ov_spec" || log "no $ov_spec wheel for this Python/platform: backend 'openvino' unavailable"
  fi
  if "$venv/bin/python" -c "import importlib.util as u; assert u.find_spec('openvino')" 2>/dev/null; then
    extras="$ort,openvino,test,lint"
    OPENVINO_C_INCLUDE_DIR=$("$venv/bin/python" -c "import importlib.util as u, pathlib as p; print(p.Path(next(iter(u.find_spec('openvino').submodule_search_locations))) / 'include')")
    export OPENVINO_C_INCLUDE_DIR
  fi
fi
# An editable install (its build tools in the venv too, for the quick C++ rebuild in
# DEVELOPERS.md): Python edits take effect at once; the C++ extension is rebuilt (in
# build/, incrementally) when a C++ source, the CUDA choice or the extras changed.
stamp=$venv/.w2sd-installed
want="cuda=$cuda extras=$extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
    || [ -n "$(find csrc CMakeLists.txt pyproject.toml -newer "$stamp" -type f 2>/dev/null \
    | head -n 1)" ]; then
  log "building and installing w2sd-runtime (C++ extension, CUDA=$cuda, extras: $extras) into $venv"
  "${pip[@]}" "${build_args[@]}" -e ".[$extras]" scikit-build-core pybind11
  echo "$want" >"$stamp"
fi
# The stamp tells the tests that this venv has the OpenVINO backend: a library that is then
# missing or does not load is a test failure there, not a skip.
if [[ $extras == *openvino* ]]; then
  echo "${ov_spec#*==}" >"$venv/.w2sd-openvino"
else
  rm -f "$venv/.w2sd-openvino"
fi
# Which backend is fastest here: OpenVINO in bf16 where the CPU has bf16 instructions.
if [[ $extras == *openvino* ]] && grep -qwE 'amx_bf16|avx512_bf16' /proc/cpuinfo 2>/dev/null; then
  log "this CPU has bf16 instructions: --backend openvino (bf16) is the fastest CPU backend here" \
    "(w2sd build ENGINE --backend openvino; w2sd sample ENGINE PROMPT --backend openvino)"
fi
log "ready: $venv/bin/w2sd"
