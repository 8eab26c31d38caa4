"""``w2sd build ENGINE_DIR --backend cpu``: graph-optimised ONNX Runtime models for the CPU EP.

ONNX Runtime's graph optimisation (constant folding, node fusions) is done
once here and saved, so that serving start-up does not redo it. The saved
level is "extended": its fusions are hardware-independent, so the engine dir
stays portable; the runtime adds only the cheap layout passes at load.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2sd.manifest import Manifest

from .common import build_converted, model_sources

BACKEND = "cpu"
SAVED_LEVEL = "extended"


def _optimize(src: Path, dst: Path) -> None:
    import onnxruntime as ort

    dst.parent.mkdir(parents=True, exist_ok=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    so.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", dst.name + ".data"
    )
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def build_cpu(manifest: Manifest, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``cpu/`` in the engine dir and record it in the manifest (atomically)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    return build_converted(
        manifest,
        BACKEND,
        model_sources(manifest),
        _optimize,
        log,
        "optimising",
        saved_optimization_level=SAVED_LEVEL,
    )
