"""OpenVINO backend scenario for tests/test_openvino.py, in the test's own process (where the
engine was exported and the onnxruntime module has made sessions): builds the openvino
backend into a copy of the engine, samples, and returns what it got."""

from __future__ import annotations

import json
import locale
from pathlib import Path
from typing import Any

import numpy as np

from engines.build import build_engine
from w2sd import W2SDRuntime
from w2sd.latents import initial_latents

KW = dict(num_inference_steps=10, reflection_steps=5, strong_guidance=7.5, weak_guidance=5.0)


def _other_shapes(rt: W2SDRuntime, result: dict[str, Any], prefix: str) -> None:
    """Another size and two prompts: shapes beyond the default request's."""
    result[f"{prefix}48px"] = rt.sample(
        "a red bicycle", latents=initial_latents(5, (1, 4, 6, 6)), output_type="latent", **KW
    )
    result[f"{prefix}two_prompts"] = rt.sample(
        ["a red bicycle", "a cat"],
        latents=initial_latents(6, (2, 4, 8, 8)),
        output_type="latent",
        **KW,
    )


def _cache(cache: Path) -> dict[str, int]:
    blobs = [p for p in cache.iterdir() if p.is_file()]
    return {"blobs": len(blobs), "largest": max((p.stat().st_size for p in blobs), default=0)}


def run(engine: Path, precision: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    process_locale = locale.setlocale(locale.LC_ALL)
    build_engine(engine, "openvino", log=lambda m: None, precision=precision)
    cache = engine / "openvino" / "cache"
    result: dict[str, Any] = {
        "cache_after_build": _cache(cache),
        "unet_weight_bytes": (engine / "openvino" / "unet0" / "model.bin").stat().st_size,
    }
    # The build's default: one dynamic-shape model per UNet.
    rt = W2SDRuntime(engine, backend="openvino")
    sessions = {"at_load": rt.unet_sessions(0)}
    x = initial_latents(4, (1, 4, 8, 8))
    for inversion in ("official", "exact"):
        result[f"latents_{inversion}"] = rt.sample(
            "a red bicycle", latents=x, output_type="latent", inversion=inversion, **KW
        )
        result[f"images_{inversion}"] = rt.sample(
            "a red bicycle", latents=x, output_type="np", inversion=inversion, **KW
        )
    _other_shapes(rt, result, "latents_")
    sessions["after_other_shapes"] = rt.unet_sessions(0)
    result["cache_after_dynamic"] = _cache(cache)
    reqs = [dict(prompt="a cat", seed=s, output_type="latent") for s in range(3)]
    sequential = np.stack([rt.sample(**r) for r in reqs])
    result["lanes_equal_sequential"] = bool(
        np.array_equal(np.stack(rt.sample_many(reqs, lanes=2)), sequential)
    )
    del rt
    # A fresh load warmed up (one short request through every model) before its first
    # request.
    warmed = W2SDRuntime(engine, backend="openvino")
    result["warm_up"] = warmed.warm_up()
    result["latents_after_warm_up"] = warmed.sample(
        "a red bicycle", latents=x, output_type="latent", **KW
    )
    del warmed
    # Static-shape models, the caller's choice: the default request's shapes at load.
    static = W2SDRuntime(engine, backend="openvino", unet_shape_sessions=2)
    sessions["static_at_load"] = static.unet_sessions(0)
    result["static_latents"] = static.sample("a red bicycle", latents=x, output_type="latent", **KW)
    sessions["static_after_default_size"] = static.unet_sessions(0)
    _other_shapes(static, result, "static_latents_")
    sessions["static_after_other_shapes"] = static.unet_sessions(0)
    del static
    result["cache_after_static"] = _cache(cache)
    # The cache is OpenVINO's to rewrite: not checksummed, and a stale one is rebuilt.
    for blob in sorted(cache.iterdir()):
        if blob.is_file():
            blob.write_bytes(b"stale")
    result["stale_cache_latents"] = W2SDRuntime(
        engine, backend="openvino", unet_shape_sessions=2
    ).sample("a red bicycle", latents=x, output_type="latent", **KW)
    # Models compiled on several threads at once leave the process's locale as it was.
    result["locale_kept"] = locale.setlocale(locale.LC_ALL) == process_locale
    build = json.loads((engine / "manifest.json").read_text())["backends"]["openvino"]
    return result, {**build, "sessions": sessions, "engine": str(engine)}
