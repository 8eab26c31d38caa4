#!/usr/bin/env bash
# One command for a CUDA machine: install the GPU flavour (onnxruntime-gpu, the CUDA
# extension), then run the GPU tests and the cuda benchmark with its peers (diffusers'
# pipeline in fp16, plain and compiled) on a realistic workload, and write one report.
#
#   bash scripts/gpu_check.sh [REPORT_DIR]      (default: gpu-report/)
#
# Online, setup comes from the package index (scripts/setup.sh). Offline (a lent machine):
# W2SD_WHEELS=DIR names the wheels and headers scripts/gpu_wheels.sh prepared and the calls
# carried there; the venv then sees the machine's own torch (--system-site-packages).
# Every step runs even if an earlier one fails, while W2SD_GPU_BUDGET_S (default 480) of wall
# time lasts; the report says which failed and why, and the script exits non-zero if any
# did. Knobs: W2SD_GPU_WORKLOAD (default gpu-sd15-512), W2SD_GPU_BENCH_ARGS (default
# "--repeat 3"), W2SD_GPU_SDXL=1 adds the gpu-sdxl-1024 bench when time is left.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-report}
mkdir -p "$out"
report=$out/report.md
venv=${W2SD_VENV:-.venv}
workload=${W2SD_GPU_WORKLOAD:-gpu-sd15-512}
budget=${W2SD_GPU_BUDGET_S:-480}
failed=()

section() { printf '\n## %s\n\n```\n' "$1" >>"$report"; }
endsection() { printf '```\n' >>"$report"; }
# step NAME CMD...: runs CMD, its output into the report (and the terminal), notes a failure.
step() {
  local name=$1
  shift
  if [ "$SECONDS" -ge "$budget" ]; then
    failed+=("$name (not run: the ${budget} s budget was spent)")
    return
  fi
  echo "gpu_check: $name (at ${SECONDS} s)" >&2
  section "$name"
  "$@" 2>&1 | tee -a "$report"
  local code=${PIPESTATUS[0]}
  endsection
  printf 'exit code: %s\n' "$code" >>"$report"
  [ "$code" = 0 ] || failed+=("$name (exit $code)")
}

{
  echo "# w2sd GPU check"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "- workload: $workload"
} >"$report"

step "nvidia-smi" nvidia-smi
# Offline set-up from carried files: join split wheels, a venv over the machine's own
# packages, the carried wheels, ONNX Runtime's headers, the extension with CUDA.
offline_setup() {
  local w=$W2SD_WHEELS first
  for first in "$w"/*.split-00; do
    [ -e "$first" ] || continue
    cat "${first%.split-00}".split-* >"${first%.split-00}" && rm "${first%.split-00}".split-*
  done
  python3 -m venv --system-site-packages "$venv" || return 1
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-index --no-deps \
    "$w"/*.whl || return 1
  mkdir -p build && tar -C build -xzf "$w/ort-headers.tgz" || return 1
  ORT_INCLUDE_DIR=$PWD/build/ort-headers/include/onnxruntime "$venv/bin/python" -m pip install \
    --disable-pip-version-check -q --no-deps --no-build-isolation \
    --config-settings=cmake.define.W2SD_WITH_CUDA=ON -e . || return 1
  echo "cuda=1 ort=gpu" >"$venv/.w2sd-installed"
}
if [ -n "${W2SD_WHEELS:-}" ]; then
  step "setup from carried wheels (CUDA extension, onnxruntime-gpu)" offline_setup
else
  step "setup (CUDA extension, onnxruntime-gpu)" env W2SD_CUDA=1 W2SD_ORT=gpu bash scripts/setup.sh
fi

# The NVIDIA libraries onnxruntime-gpu loads (cuDNN, cuBLAS, ...; TensorRT for --backend
# tensorrt) from pip, for the CUDA major version the installed wheel was built with. The core
# preloads them from site-packages (python/w2sd/gpu_libraries.py).
nvidia_libs() {
  local major
  major=$("$venv/bin/python" - <<'EOF'
import importlib.util, pathlib, re
spec = importlib.util.find_spec("onnxruntime")
info = pathlib.Path(spec.submodule_search_locations[0]) / "capi" / "build_and_package_info.py"
m = re.search(r"""cuda_version\s*=\s*["'](\d+)""", info.read_text()) if info.is_file() else None
print(m.group(1) if m else "")
EOF
  )
  if [ -z "$major" ]; then
    echo "the installed onnxruntime is not a CUDA build"
    return 1
  fi
  echo "onnxruntime-gpu is built with CUDA $major"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q \
    "onnxruntime-gpu[cuda,cudnn]" || return 1
  "$venv/bin/python" -m pip install --disable-pip-version-check -q "tensorrt-cu${major}-libs" \
    || echo "TensorRT libraries for CUDA $major not installed: backend tensorrt will say why"
}
[ -n "${W2SD_WHEELS:-}" ] || step "NVIDIA libraries (pip)" nvidia_libs
step "onnxruntime build" "$venv/bin/python" -c \
  "import onnxruntime as o; print(o.__version__); print(o.get_build_info()); print(o.get_available_providers())"
step "backends" "$venv/bin/w2sd" info --backends
step "GPU tests (pytest -m gpu)" env W2SD_EXPECT_CUDA=1 "$venv/bin/python" -m pytest -m gpu -v -rA
# The runtime (fused fp16 graph) against diffusers' own fp16 pipeline, plain and compiled, and
# the fp32 reference loop (image PSNR of the same latents: the fused graph's parity).
peers=diffusers,diffusers-pipeline,diffusers-compile,ddim
# shellcheck disable=SC2086
step "bench --backend cuda ($workload)" "$venv/bin/w2sd" bench --workload "$workload" \
  --backend cuda --baselines "$peers" ${W2SD_GPU_BENCH_ARGS:---repeat 3} \
  --json "$out/bench-cuda.json"
if [ "${W2SD_GPU_SDXL:-0}" = 1 ]; then
  step "bench --backend cuda (gpu-sdxl-1024)" "$venv/bin/w2sd" bench --workload gpu-sdxl-1024 \
    --backend cuda --baselines diffusers-pipeline --repeat 1 --concurrency 1 \
    --json "$out/bench-cuda-sdxl.json"
fi

{
  echo
  echo "## Summary"
  echo
  if [ ${#failed[@]} -eq 0 ]; then
    echo "every step passed"
  else
    printf -- '- failed: %s\n' "${failed[@]}"
  fi
} >>"$report"
echo "gpu_check: report in $report" >&2
[ ${#failed[@]} -eq 0 ]
