"""``w2sd build ENGINE_DIR --backend tensorrt``: TensorRT engines through ONNX Runtime's
TensorRT EP, built ahead of time and stored in the engine dir.

fp16, one optimisation profile (min/opt/max shapes from the manifest's image
range and --max-batch), engine and timing caches under ``tensorrt/cache`` and
EP-context models under ``tensorrt/``, so that serving starts without
rebuilding. Needs onnxruntime-gpu with TensorRT and a CUDA device.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2sd.errors import BackendError
from w2sd.manifest import Manifest

from .common import artifacts_under
from .cpu import model_sources

BACKEND = "tensorrt"


# A denoiser engine's symbolic C/H/W dimensions: (min, opt, max) in the profile.
DENOISER_FREE_DIM = (1, 16, 256)


def _denoiser_profiles(shape: list[int | None], max_batch: int) -> dict[str, str]:
    """Unconditional denoisers: one pass per call (no guidance batch), sample and timestep."""
    out = {}
    for k, (kind, batch) in enumerate((("min", 1), ("opt", max_batch), ("max", max_batch))):
        dims = [batch] + [DENOISER_FREE_DIM[k] if d is None else d for d in shape]
        out[kind] = f"sample:{'x'.join(map(str, dims))},timestep:1"
    return out


def profile_shapes(manifest: Manifest, max_batch: int) -> dict[str, str]:
    """trt_profile_{min,opt,max}_shapes for the UNet: 'name:AxBxC,...' strings."""
    spec = manifest.spec
    if spec.denoiser is not None:
        return _denoiser_profiles(spec.denoiser.sample_shape, max_batch)
    img, f, c = spec.image, spec.vae_scale_factor, spec.latent_channels
    text = spec.text
    added = spec.unet_added_conditions
    sizes = {
        "min": (1, img.min_size),
        "opt": (2, img.default_height),
        "max": (2 * max_batch, img.max_size),
    }
    out = {}
    for kind, (batch, px) in sizes.items():
        dims = {
            "sample": [batch, c, px // f, px // f],
            "timestep": [1],
            "encoder_hidden_states": [batch, text.text_len, text.text_dim],
        }
        if added:
            dims["text_embeds"] = [batch, added.pooled_dim]
            dims["time_ids"] = [batch, added.time_ids_dim]
        out[kind] = ",".join(f"{k}:{'x'.join(map(str, v))}" for k, v in dims.items())
    return out


def provider_options(root: Path, profiles: dict[str, str]) -> dict[str, str]:
    cache = root / BACKEND / "cache"
    return {
        "trt_fp16_enable": "1",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(cache),
        "trt_profile_min_shapes": profiles["min"],
        "trt_profile_opt_shapes": profiles["opt"],
        "trt_profile_max_shapes": profiles["max"],
    }


def build_tensorrt(
    manifest: Manifest, log: Callable[[str], None] | None = None, max_batch: int = 1
) -> dict[str, Any]:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise BackendError(
            "backend 'tensorrt' needs ONNX Runtime's TensorRT execution provider "
            "(onnxruntime-gpu with TensorRT libraries) and a CUDA device; this machine's "
            f"ONNX Runtime offers {ort.get_available_providers()}"
        )
    root = manifest.root
    sources = model_sources(manifest)
    manifest.verify(sorted(set(sources.values())), full=True)
    profiles = profile_shapes(manifest, max_batch)
    (root / BACKEND / "cache").mkdir(parents=True, exist_ok=True)
    files = {}
    for i, (name, rel) in enumerate(sources.items(), 1):
        log(f"[{i}/{len(sources)}] building TensorRT engine for {name} (this takes minutes)")
        opts = (
            provider_options(root, profiles)
            if name.startswith("unet")
            else {k: v for k, v in provider_options(root, profiles).items() if "profile" not in k}
        )
        ctx = root / BACKEND / f"{name}_ctx.onnx"
        opts.update(trt_dump_ep_context_model="1", trt_ep_context_file_path=str(ctx))
        ort.InferenceSession(
            str(root / rel),
            providers=[("TensorrtExecutionProvider", opts), "CUDAExecutionProvider"],
        )
        files[name] = ctx.relative_to(root).as_posix() if ctx.exists() else rel
    artifacts = artifacts_under(root, root / BACKEND)
    entry = {
        "files": files,
        "profiles": profiles,
        "max_batch": max_batch,
        "provider_options": {
            k: v for k, v in provider_options(root, profiles).items() if not k.endswith("_path")
        },
        "artifacts": artifacts,
    }
    manifest.record_build(BACKEND, entry)
    log(f"built backend '{BACKEND}' in {root / BACKEND}")
    return entry
