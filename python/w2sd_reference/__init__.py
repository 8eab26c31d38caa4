"""The parity oracle: W2SD written with diffusers' own schedulers, pipelines and loaders
(../shared/W2SD-SPEC.md). It never imports the runtime's code, so a check can disagree."""

from __future__ import annotations

from .reference import W2SDReference

__all__ = ["W2SDReference"]
