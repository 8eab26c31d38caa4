#!/usr/bin/env bash
# Prepare what a lent GPU machine (no network; Python 3.12 with torch, onnx, pytest, pybind11,
# scikit-build-core already there) needs and does not have, as files to carry there:
# onnxruntime-gpu, diffusers and the runtime's small pure dependencies as wheels, and ONNX
# Runtime's C/C++ headers, in parts of at most W2SD_GPU_PART_MB (default 46) MB, large wheels
# split: a device call carries at most 64 MiB, the working tree (about 16 MB) included;
# scripts/gpu_check.sh joins them again.
#
#   bash scripts/gpu_wheels.sh [DIR]     (default: .gpu-wheels, git-ignored)
#
# Then carry DIR/part-1 ... DIR/part-N in back-to-back device calls, each copying its part
# to /tmp/w2sd-wheels, and run `W2SD_WHEELS=/tmp/w2sd-wheels bash scripts/gpu_check.sh` in the
# last one (see ../shared/GPU-DEVICE.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-wheels}
py=${W2SD_GPU_PYTHON:-3.12}
rm -rf "$dir"
mkdir -p "$dir/all"
download() {
  python3 -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
    --python-version "$py" --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$dir/all" "$@"
}
download "onnxruntime-gpu==${W2SD_ORT_GPU_VERSION:-1.31.1}"
# diffusers and what the runtime, export and the reference need that the image lacks.
download "diffusers==0.42.1" pydantic pydantic-core annotated-types typing-inspection
[ -f build/ort-headers/include/onnxruntime/onnxruntime_cxx_api.h ] \
  || bash scripts/fetch_ort_headers.sh build/ort-headers >/dev/null
tar -C build -czf "$dir/all/ort-headers.tgz" ort-headers

# Fill parts, splitting the large files.
part=1
size=0
limit=$((${W2SD_GPU_PART_MB:-46} * 1000 * 1000))
mkdir -p "$dir/part-$part"
for f in "$dir"/all/*; do
  bytes=$(stat -c %s "$f")
  if [ "$bytes" -gt "$limit" ]; then
    (cd "$dir/all" && split -b "$limit" -d "$(basename "$f")" "$(basename "$f").split-")
    rm "$f"
  fi
done
for f in "$dir"/all/*; do
  bytes=$(stat -c %s "$f")
  if [ $((size + bytes)) -gt "$limit" ] && [ "$size" -gt 0 ]; then
    part=$((part + 1))
    size=0
    mkdir -p "$dir/part-$part"
  fi
  mv "$f" "$dir/part-$part/"
  size=$((size + bytes))
done
rmdir "$dir/all"
du -sh "$dir"/part-* >&2
echo "gpu_wheels: $part parts in $dir" >&2
