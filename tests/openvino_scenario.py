"""OpenVINO backend scenario for tests/test_openvino.py, in its own process: the core runs
on the OpenVINO wheel's library (W2SD_ORT_LIBRARY), and the Python onnxruntime module is
never imported here (two ONNX Runtime builds in one process crash or hang).

usage: python openvino_scenario.py ENGINE_COPY PRECISION|default OUT.npz
Builds the openvino backend into ENGINE_COPY, samples, and saves what it got."""

from __future__ import annotations

import json
import sys

import numpy as np

from engines.build import build_engine
from w2sd import W2SDRuntime
from w2sd.latents import initial_latents
from w2sd.ort_library import find_ort_library, openvino_cache_support

KW = dict(num_inference_steps=10, reflection_steps=5, strong_guidance=7.5, weak_guidance=5.0)


def main() -> int:
    engine, precision, out = sys.argv[1], sys.argv[2], sys.argv[3]
    build_engine(
        engine,
        "openvino",
        log=lambda m: None,
        precision=None if precision == "default" else precision,
    )
    rt = W2SDRuntime(engine, backend="openvino")
    sessions = {"at_load": rt.unet_sessions(0)}
    x = initial_latents(4, (1, 4, 8, 8))
    result = {}
    for inversion in ("official", "exact"):
        result[f"latents_{inversion}"] = rt.sample(
            "a red bicycle", latents=x, output_type="latent", inversion=inversion, **KW
        )
        result[f"images_{inversion}"] = rt.sample(
            "a red bicycle", latents=x, output_type="np", inversion=inversion, **KW
        )
    sessions["after_default_size"] = rt.unet_sessions(0)
    # Another size and two prompts: shapes beyond the compiled ones, on the dynamic session.
    result["latents_48px"] = rt.sample(
        "a red bicycle", latents=initial_latents(5, (1, 4, 6, 6)), output_type="latent", **KW
    )
    result["latents_two_prompts"] = rt.sample(
        ["a red bicycle", "a cat"],
        latents=initial_latents(6, (2, 4, 8, 8)),
        output_type="latent",
        **KW,
    )
    sessions["after_other_shapes"] = rt.unet_sessions(0)
    dynamic_only = W2SDRuntime(engine, backend="openvino", unet_shape_sessions=0)
    sessions["dynamic_only"] = dynamic_only.unet_sessions(0)
    result["latents_dynamic_only"] = dynamic_only.sample(
        "a red bicycle", latents=x, output_type="latent", **KW
    )
    del dynamic_only
    reqs = [dict(prompt="a cat", seed=s, output_type="latent") for s in range(3)]
    sequential = np.stack([rt.sample(**r) for r in reqs])
    result["lanes_equal_sequential"] = np.array(
        np.array_equal(np.stack(rt.sample_many(reqs, lanes=2)), sequential)
    )
    # The cache is OpenVINO's to rewrite: not checksummed, so a stale one is harmless. Where
    # OpenVINO cannot read it back (this wheel), there is none to go stale.
    cache = rt.manifest.path("openvino/cache")
    blobs = sorted(cache.iterdir())
    for blob in blobs:
        blob.write_bytes(b"stale")
    again = W2SDRuntime(engine, backend="openvino").sample(
        "a red bicycle", latents=x, output_type="latent", **KW
    )
    result["stale_cache_latents"] = again
    result["cache_blobs"] = np.array(len(blobs))
    result["cache_blobs_after_reload"] = np.array(len(list(cache.iterdir())))
    result["cache_supported"] = np.array(openvino_cache_support(find_ort_library())[0])
    np.savez(out, **result)
    build = json.loads((rt.manifest.root / "manifest.json").read_text())["backends"]["openvino"]
    facts = ("precision", "precision_reason", "provider_options", "files", "warm_unet_shapes")
    print(json.dumps({**{k: build[k] for k in facts}, "sessions": sessions, "engine": engine}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
