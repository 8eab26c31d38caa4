"""Baseline "ov-python": the same plain Python W2SD loop as ``ort-python``, over OpenVINO's own
Python API on the engine's openvino build (the same IR, precision hint and CPU), with the
build's choice of UNet shapes: one dynamic-shape model per UNet (the default, as the runtime
loads it) or, where the build records static-shape models, one per input shape (compiled
when first seen). Text encoders and the VAE are compiled as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from w2sd.manifest import load_manifest

from .ort_python import OrtPythonW2SD


class _OvModel:
    """An OpenVINO model behind ONNX Runtime's ``run(None, feed)``."""

    def __init__(self, core: Any, path: Path, config: dict[str, str], static: bool) -> None:
        self.core, self.path, self.config, self.static = core, path, config, static
        self.compiled: dict[tuple[Any, ...], Any] = {}

    def _request(self, feed: dict[str, np.ndarray]) -> tuple[Any, Any]:
        key = tuple(sorted((k, v.shape) for k, v in feed.items())) if self.static else ()
        if key not in self.compiled:
            model = self.core.read_model(str(self.path))
            if self.static:
                model.reshape({k: list(v.shape) for k, v in feed.items()})
            compiled = self.core.compile_model(model, "CPU", self.config)
            self.compiled[key] = (compiled, compiled.create_infer_request())
        return self.compiled[key]

    def run(self, _outputs: None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        compiled, request = self._request(feed)
        result = request.infer(feed)
        return [np.asarray(result[out]) for out in compiled.outputs]


def ov_python_loop(engine_dir: str | Path) -> OrtPythonW2SD:
    """The plain loop on the engine's openvino build (`w2sd build --backend openvino`)."""
    import openvino as ov

    m = load_manifest(engine_dir)
    built = m.spec.backends["openvino"]
    facts = built.model_extra or {}
    hint = "bf16" if facts.get("precision") == "bf16" else "f32"
    config = {"INFERENCE_PRECISION_HINT": hint}
    static_unets = int(facts.get("unet_shape_sessions", 0)) > 0
    core = ov.Core()

    def open_model(name: str, _exported: str) -> _OvModel:
        static = static_unets and name.startswith("unet")
        return _OvModel(core, m.path(built.files[name]), config, static)

    return OrtPythonW2SD(engine_dir, open_model=open_model)


__all__ = ["ov_python_loop"]
