"""A denoiser engine on another backend, in its own process (the OpenVINO wheel's library
must not share a process with the Python onnxruntime module).

usage: python denoiser_scenario.py ENGINE_COPY BACKEND LATENTS.npy OUT.npz"""

from __future__ import annotations

import sys

import numpy as np

from engines.build import build_engine
from w2sd import W2SDRuntime


def main() -> int:
    engine, backend, latents, out = sys.argv[1:5]
    build_engine(engine, backend, log=lambda m: None)
    rt = W2SDRuntime(engine, backend=backend)
    x = np.load(latents)
    result = {
        f"{inversion}": rt.sample(
            latents=x, output_type="latent", reflection_steps=5, inversion=inversion
        )
        for inversion in ("official", "exact")
    }
    np.savez(out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
