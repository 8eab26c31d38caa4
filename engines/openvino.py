"""``w2sd build ENGINE_DIR --backend openvino [--precision bf16|fp32]``: OpenVINO's own runtime
on the CPU.

The exported ONNX models are converted once to OpenVINO IR (``openvino.convert_model`` /
``save_model``, fp32 weights kept: the precision is a compile-time hint) in ``openvino/``,
checksummed like any build's artifacts, and the build loads the engine once to check it.
Every model loads as it is converted, with dynamic shapes: one compiled model per UNet serves
every request size, so its weights are held once (a static-shape model per input shape holds
a copy each). Static-shape UNet models stay a choice at load
(``W2SDRuntime(..., unet_shape_sessions=2)``: the default request's shapes, recorded here);
those go through OpenVINO's compiled-model cache in ``openvino/cache`` (``CACHE_DIR``),
filled when first compiled. OpenVINO keys its cache on the model, the properties and the CPU:
a cache from another CPU or another build is not used and is rewritten, never an error, so it
is kept out of checksum verification. bf16 comes through ``INFERENCE_PRECISION_HINT``; it is
the default where the CPU has bf16 instructions (``amx_bf16`` or ``avx512_bf16`` in
/proc/cpuinfo), fp32 otherwise.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2sd.cpuinfo import bf16_support, cpu_flags
from w2sd.errors import InvalidArgumentError
from w2sd.manifest import Manifest

from .common import build_converted, model_sources

BACKEND = "openvino"
PRECISIONS = ("bf16", "fp32")
CACHE = f"{BACKEND}/cache"
IR_FILE = "model.xml"  # its weights beside it in model.bin


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


# Static-shape UNet models per UNet at load (OpenVinoBackendConfig::unet_shape_sessions): none,
# one dynamic-shape model holding the weights once (measured in docs/openvino.md).
UNET_SHAPE_SESSIONS = 0


def default_unet_shapes(manifest: Manifest) -> list[dict[str, int]]:
    """The UNet input shapes the engine's default request runs (one prompt, the default
    size and guidance), compiled while loading where the caller asks for static-shape
    models: a role whose guidance is 1 runs the conditional pass alone (batch 1), the others
    both passes (batch 2). None for a denoiser engine (sized by its latents): its UNets load
    with dynamic shapes."""
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


def _to_ir(src: Path, dst: Path) -> None:
    """ONNX -> OpenVINO IR, fp32 weights kept."""
    import openvino as ov

    dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(src), dst, compress_to_fp16=False)


def build_openvino(
    manifest: Manifest,
    log: Callable[[str], None] | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Convert every model to IR, record the build, then load it once: OpenVINO compiles
    every model (a load that fails undoes the build)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    chosen, why = choose_precision(precision, cpu_flags())
    log(f"openvino: precision {chosen} ({why})")
    root = manifest.root
    entry = build_converted(
        manifest,
        BACKEND,
        model_sources(manifest),
        _to_ir,
        log,
        "converting to OpenVINO IR",
        IR_FILE,
        format="openvino-ir",
        precision=chosen,
        precision_reason=why,
        unet_shape_sessions=UNET_SHAPE_SESSIONS,
        warm_unet_shapes=default_unet_shapes(manifest),
        mutable=[CACHE],
    )
    (root / CACHE).mkdir(parents=True, exist_ok=True)
    log("openvino: loading the engine once to check it")
    try:
        _check_loads(root)
    except BaseException:
        # No half-built backend: drop the record and what was written.
        manifest.spec.backends.pop(BACKEND, None)
        manifest.save()
        shutil.rmtree(root / BACKEND, ignore_errors=True)
        raise
    return entry


def _check_loads(root: Path) -> None:
    """Load the engine once (in this process: OpenVINO's library shares a process with the
    onnxruntime module and with openvino's Python API)."""
    from w2sd.runtime import W2SDRuntime

    W2SDRuntime(root, backend=BACKEND)
