"""Decoded images: the VAE's float output to uint8 and PIL, as diffusers' postprocess."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_uint8_images(image: np.ndarray) -> np.ndarray:
    """VAE output (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3): round(clamp(x/2 + 0.5) * 255)."""
    x = np.clip(image / 2 + 0.5, 0.0, 1.0).transpose(0, 2, 3, 1)
    return np.round(x * 255).astype(np.uint8)


def to_pil(images: np.ndarray) -> list[Any]:
    from PIL import Image

    return [Image.fromarray(im) for im in images]
