"""Engine building entry point: one function per backend, chosen by name.

The GPU builds (cuda, tensorrt) run in a child process (``python -m engines.build``):
they use ONNX Runtime's Python module (the fp16 converter; TensorRT engine building loads
the GPU provider libraries into it), and the module is a second copy of ONNX Runtime
beside the one the core loads. Two runtimes sharing one process's provider libraries
(``libonnxruntime_providers_shared.so`` keeps a pointer to whichever runtime loaded it
first) is not a supported arrangement, so a process that samples never builds a GPU
engine itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from w2sd.errors import InvalidArgumentError, W2SDError, from_record, to_record
from w2sd.manifest import load_manifest

from .cpu import build_cpu
from .cuda import build_cuda
from .openvino import build_openvino
from .tensorrt import build_tensorrt

BUILDERS = {
    "cpu": build_cpu,
    "openvino": build_openvino,
    "cuda": build_cuda,
    "tensorrt": build_tensorrt,
}
IN_CHILD = ("cuda", "tensorrt")
# The child's last stdout line: {"entry": ...} or {"error": class name, "message": ...}.
RESULT_PREFIX = "w2sd-build-result: "


def build_engine(
    engine_dir: str,
    backend: str,
    log: Callable[[str], None] | None = None,
    precision: str | None = None,
    max_batch: int | None = None,
) -> dict[str, Any]:
    """Build `backend`'s artifacts into the engine dir; `precision` is openvino's choice,
    `max_batch` tensorrt's (the largest batch its profiles take, default 1)."""
    if backend not in BUILDERS:
        raise InvalidArgumentError(
            f"backend: unknown backend {backend!r} (buildable: {', '.join(BUILDERS)})"
        )
    if precision is not None and backend != "openvino":
        raise InvalidArgumentError("--precision applies to --backend openvino only")
    if max_batch is not None and backend != "tensorrt":
        raise InvalidArgumentError("--max-batch applies to --backend tensorrt only")
    if max_batch is not None and (isinstance(max_batch, bool) or max_batch < 1):
        raise InvalidArgumentError(f"max_batch must be >= 1, got {max_batch!r}")
    if backend in IN_CHILD:
        load_manifest(engine_dir)  # a bad engine dir fails here, not in the child
        return _build_in_child(engine_dir, backend, log, max_batch)
    return build_here(engine_dir, backend, log, precision)


def build_here(
    engine_dir: str,
    backend: str,
    log: Callable[[str], None] | None = None,
    precision: str | None = None,
    max_batch: int | None = None,
) -> dict[str, Any]:
    """The build itself, in this process."""
    manifest = load_manifest(engine_dir)
    if backend == "openvino":
        return build_openvino(manifest, log=log, precision=precision)
    if backend == "tensorrt":
        return build_tensorrt(manifest, log=log, max_batch=max_batch or 1)
    return BUILDERS[backend](manifest, log=log)


def _build_in_child(
    engine_dir: str, backend: str, log: Callable[[str], None] | None, max_batch: int | None
) -> dict[str, Any]:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    cmd = [sys.executable, "-m", "engines.build", engine_dir, backend]
    if max_batch is not None:
        cmd += ["--max-batch", str(max_batch)]
    # One pipe for both streams (two could fill and block the child).
    result: dict[str, Any] | None = None
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
            else:
                log(line.rstrip("\n"))
                tail = [*tail[-40:], line]
    code = proc.returncode
    if result is not None and "entry" in result and code == 0:
        return dict(result["entry"])
    if result is not None and "error" in result:
        raise from_record(result)
    raise W2SDError(
        f"building backend {backend!r} failed in its build process (exit {code}):\n"
        f"{''.join(tail).strip()}"
    )


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.build")
    parser.add_argument("engine_dir")
    parser.add_argument("backend", choices=IN_CHILD)
    parser.add_argument("--max-batch", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        entry = build_here(
            args.engine_dir,
            args.backend,
            log=lambda m: print(m, flush=True),
            max_batch=args.max_batch,
        )
    except W2SDError as e:
        print(RESULT_PREFIX + json.dumps(to_record(e)))
        return 2
    print(RESULT_PREFIX + json.dumps({"entry": entry}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
