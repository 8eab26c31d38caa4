"""``w2sd build ENGINE_DIR --backend openvino [--precision bf16|fp32]``: ONNX Runtime's
OpenVINO execution provider on the CPU.

OpenVINO takes the exported ONNX models as they are (ONNX Runtime's own graph
optimisations are off: its fused contrib ops are not OpenVINO ops), compiles them for
this CPU and, where OpenVINO can read its cache back (``openvino_cache_support``: the
onnxruntime-openvino 1.24.1 wheel cannot), caches the compiled models in ``openvino/cache``
so that later loads skip compilation. bf16 comes through OpenVINO's ``load_config``
(``{"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}``); it is the default where the CPU has
bf16 instructions (``amx_bf16`` or ``avx512_bf16`` in /proc/cpuinfo), fp32 otherwise.
The cache is rewritten by OpenVINO when it sees a new CPU or shape, so it is kept out of
checksum verification; the models it is built from are verified as exported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2sd.cpuinfo import bf16_support, cpu_flags
from w2sd.errors import BackendError, InvalidArgumentError
from w2sd.manifest import Manifest
from w2sd.ort_library import find_ort_library, openvino_cache_support

from .common import model_sources

BACKEND = "openvino"
PRECISIONS = ("bf16", "fp32")
CACHE = f"{BACKEND}/cache"
GRAPH_OPTIMIZATION_DISABLED = 0


def choose_precision(requested: str | None, flags: set[str]) -> tuple[str, str]:
    """(precision, why): bf16 where the CPU has bf16 instructions, else fp32."""
    if requested is not None and requested not in PRECISIONS:
        raise InvalidArgumentError(
            f"--precision: unknown {requested!r} (known: {', '.join(PRECISIONS)})",
            param="precision",
        )
    if requested == "fp32":
        return "fp32", "asked for"
    fast, why = bf16_support(flags)
    if fast:
        return "bf16", why
    if requested == "bf16":
        raise InvalidArgumentError(f"--precision bf16: {why}", param="precision")
    return "fp32", why


def provider_options(precision: str) -> dict[str, str]:
    """OpenVINO EP options (cache_dir is added at load time, inside the engine dir)."""
    hint = "bf16" if precision == "bf16" else "f32"
    options = {
        "device_type": "CPU",
        "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": hint}}),
    }
    if precision == "fp32":
        options["precision"] = "FP32"
    return options


# Static-shape UNet sessions per UNet (OpenVinoBackendConfig::unet_shape_sessions): the guided
# (2B) and the unguided (B) batch of one request size.
UNET_SHAPE_SESSIONS = 2


def default_unet_shapes(manifest: Manifest) -> list[dict[str, int]]:
    """The UNet input shapes the engine's default request runs (one prompt, the default
    size and guidance), compiled while loading: a role whose guidance is 1 runs the
    conditional pass alone (batch 1), the others both passes (batch 2). None for a denoiser
    engine (sized by its latents): its UNets load with dynamic shapes."""
    spec = manifest.spec
    if spec.image is None or spec.text is None or spec.latent_channels is None:
        return []
    f = spec.vae_scale_factor
    common = {
        "channels": spec.latent_channels,
        "height": spec.image.default_height // f,
        "width": spec.image.default_width // f,
        "text_len": spec.text.text_len,
        "text_dim": spec.text.text_dim,
    }
    added = spec.unet_added_conditions
    if added is not None:
        common.update(pooled_dim=added.pooled_dim, time_ids_dim=added.time_ids_dim)
    runs = sorted({(r.unet, 1 if r.guidance == 1.0 else 2) for r in spec.roles.values()})
    return [{"unet": unet, "batch": batch, **common} for unet, batch in runs]


def build_openvino(
    manifest: Manifest,
    log: Callable[[str], None] | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Record the build, then load it once: OpenVINO compiles every model (and fills the
    compiled-model cache where it can read it back)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    chosen, why = choose_precision(precision, cpu_flags())
    log(f"openvino: precision {chosen} ({why})")
    root = manifest.root
    sources = model_sources(manifest)
    models = sorted(
        rel
        for rel in manifest.spec.artifacts
        if any(rel.startswith(src.rsplit("/", 1)[0] + "/") for src in sources.values())
    )
    manifest.verify(models, full=True)
    shutil.rmtree(root / BACKEND, ignore_errors=True)
    (root / CACHE).mkdir(parents=True)
    entry = {
        "files": sources,
        # The exported models, verified like any build's artifacts.
        "artifacts": {rel: manifest.spec.artifacts[rel].model_dump() for rel in models},
        "precision": chosen,
        "precision_reason": why,
        "provider_options": provider_options(chosen),
        "graph_optimization_level": GRAPH_OPTIMIZATION_DISABLED,
        "unet_shape_sessions": UNET_SHAPE_SESSIONS,
        "warm_unet_shapes": default_unet_shapes(manifest),
        "mutable": [CACHE],
    }
    manifest.record_build(BACKEND, entry)
    cached, why_not = openvino_cache_support(find_ort_library(BACKEND))
    log(
        "openvino: compiling every model once to fill the cache"
        if cached
        else f"openvino: compiling every model once to check it (no cache: {why_not})"
    )
    try:
        _fill_cache(root)
    except BaseException:
        # No half-built backend: drop the record and what was written.
        manifest.spec.backends.pop(BACKEND, None)
        manifest.save()
        shutil.rmtree(root / BACKEND, ignore_errors=True)
        raise
    log(f"built backend '{BACKEND}' in {root / BACKEND}")
    return entry


def _fill_cache(root: Path) -> None:
    """Load the engine once in a fresh process: a process that has imported the
    ``onnxruntime`` Python module (export, verification) must not also load the OpenVINO
    wheel's library, the two crash together."""
    code = (
        "import sys; from w2sd.runtime import W2SDRuntime; "
        "W2SDRuntime(sys.argv[1], backend=sys.argv[2])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root), BACKEND], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        tail = tail or f"exit status {proc.returncode}"
        raise BackendError(f"openvino: loading the built engine failed:\n{tail}")
