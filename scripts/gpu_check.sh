#!/usr/bin/env bash
# One command for a person on a CUDA machine: install the GPU flavour (onnxruntime-gpu, the
# NVIDIA CUDA/cuDNN/TensorRT pip libraries, the CUDA extension), then run the GPU tests and
# the cuda and tensorrt benchmarks on a realistic workload, and write one report.
#
#   bash scripts/gpu_check.sh [REPORT_DIR]      (default: gpu-report/)
#
# Every step runs even if an earlier one fails; the report says which failed and why, and
# the script exits non-zero if any did. Knobs: W2SD_GPU_WORKLOAD (default gpu-sd15-512),
# W2SD_GPU_BENCH_ARGS (extra `w2sd bench` arguments, default "--repeat 3").
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-report}
mkdir -p "$out"
report=$out/report.md
venv=${W2SD_VENV:-.venv}
workload=${W2SD_GPU_WORKLOAD:-gpu-sd15-512}
failed=()

section() { printf '\n## %s\n\n```\n' "$1" >>"$report"; }
endsection() { printf '```\n' >>"$report"; }
# step NAME CMD...: runs CMD, its output into the report (and the terminal), notes a failure.
step() {
  local name=$1
  shift
  echo "gpu_check: $name" >&2
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
step "setup (CUDA extension, onnxruntime-gpu)" env W2SD_CUDA=1 W2SD_ORT=gpu bash scripts/setup.sh

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
step "NVIDIA libraries (pip)" nvidia_libs
step "onnxruntime build" "$venv/bin/python" -c \
  "import onnxruntime as o; print(o.__version__); print(o.get_build_info()); print(o.get_available_providers())"
step "backends" "$venv/bin/w2sd" info --backends
step "GPU tests (pytest -m gpu)" "$venv/bin/python" -m pytest -m gpu -v -rA
for backend in cuda tensorrt; do
  # shellcheck disable=SC2086
  step "bench --backend $backend ($workload)" "$venv/bin/w2sd" bench --workload "$workload" \
    --backend "$backend" ${W2SD_GPU_BENCH_ARGS:---repeat 3} --json "$out/bench-$backend.json"
done

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
