"""The runtime's seed -> initial latents mapping (host side, identical on every backend).

latents = numpy.random.Generator(numpy.random.PCG64(seed)).standard_normal(
              (batch, channels, height // f, width // f), dtype=float32) * init_noise_sigma
with f the VAE scale factor and init_noise_sigma = 1 for DDIM.
"""

from __future__ import annotations

import numpy as np


def initial_latents(seed: int, shape: tuple[int, int, int, int]) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal(shape, dtype=np.float32)
