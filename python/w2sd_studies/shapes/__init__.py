"""The coloured-shapes world: a dataset the project draws itself (``render``), the
objective prompt-adherence scorer that knows its rules (``scorer``), and the
trained tiny text-to-image pair shipped with the package (``models_dir``).

Needs numpy only; training (``python -m w2sd_studies.shapes.train``) needs torch."""

from __future__ import annotations

from pathlib import Path

from .render import COLOURS, SHAPES, Scene, parse_prompt, render, sample_scenes
from .scorer import ShapeScore, score_images

__all__ = [
    "COLOURS",
    "SHAPES",
    "Scene",
    "ShapeScore",
    "models_dir",
    "parse_prompt",
    "render",
    "sample_scenes",
    "score_images",
]


def models_dir() -> Path:
    """Where the trained pair's diffusers folders (strong/, weak/) lie."""
    return Path(__file__).parent / "models"
