"""OpenVINO backend scenario for tests/test_openvino.py, in the test's own process (where the
engine was exported and the onnxruntime module has made sessions): builds the openvino
backend into a copy of the engine, samples, and returns what it got."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from engines.build import build_engine
from w2sd import W2SDRuntime
from w2sd.latents import initial_latents

KW = dict(num_inference_steps=10, reflection_steps=5, strong_guidance=7.5, weak_guidance=5.0)


def _other_shapes(rt: W2SDRuntime, result: dict[str, Any]) -> None:
    """Another size and two prompts: shapes beyond the compiled ones."""
    result["latents_48px"] = rt.sample(
        "a red bicycle", latents=initial_latents(5, (1, 4, 6, 6)), output_type="latent", **KW
    )
    result["latents_two_prompts"] = rt.sample(
        ["a red bicycle", "a cat"],
        latents=initial_latents(6, (2, 4, 8, 8)),
        output_type="latent",
        **KW,
    )


def run(engine: Path, precision: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    build_engine(engine, "openvino", log=lambda m: None, precision=precision)
    cache = engine / "openvino" / "cache"
    result: dict[str, Any] = {
        "cache_blobs": len(list(cache.iterdir())),
        "cache_bytes": sum(p.stat().st_size for p in cache.iterdir()),
        "ir_weight_bytes": sum(p.stat().st_size for p in (engine / "openvino").glob("*/model.bin")),
    }
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
    sessions["after_default_size"] = rt.unet_sessions(0)
    _other_shapes(rt, result)
    sessions["after_other_shapes"] = rt.unet_sessions(0)
    dynamic_only = W2SDRuntime(engine, backend="openvino", unet_shape_sessions=0)
    sessions["dynamic_only"] = dynamic_only.unet_sessions(0)
    result["latents_dynamic_only"] = dynamic_only.sample(
        "a red bicycle", latents=x, output_type="latent", **KW
    )
    del dynamic_only
    reqs = [dict(prompt="a cat", seed=s, output_type="latent") for s in range(3)]
    sequential = np.stack([rt.sample(**r) for r in reqs])
    result["lanes_equal_sequential"] = bool(
        np.array_equal(np.stack(rt.sample_many(reqs, lanes=2)), sequential)
    )
    # The cache is OpenVINO's to rewrite: not checksummed, and a stale one is rebuilt.
    for blob in sorted(cache.iterdir()):
        if blob.is_file():
            blob.write_bytes(b"stale")
    result["stale_cache_latents"] = W2SDRuntime(engine, backend="openvino").sample(
        "a red bicycle", latents=x, output_type="latent", **KW
    )
    build = json.loads((engine / "manifest.json").read_text())["backends"]["openvino"]
    return result, {**build, "sessions": sessions, "engine": str(engine)}
