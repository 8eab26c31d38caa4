"""Model families: how each one's text conditioning is built (../shared/W2SD-SPEC.md,
"Text conditioning"). Used by export and by the reference; names classes lazily so
that importing this module needs no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from w2sd.errors import ExportError


@dataclass(frozen=True)
class TextEncoderSpec:
    tokenizer: str  # subfolder
    encoder: str  # subfolder
    hidden: str  # "last" (SD 1.x/2.x last_hidden_state) or "penultimate" (SDXL)
    pooled: bool  # also gives SDXL's pooled `text_embeds`
    class_name: str  # transformers class

    def model_class(self) -> Any:
        import transformers

        return getattr(transformers, self.class_name)


@dataclass(frozen=True)
class Family:
    name: str
    pipeline: str  # diffusers pipeline class
    encoders: tuple[TextEncoderSpec, ...]

    def pipeline_class(self) -> Any:
        import diffusers

        return getattr(diffusers, self.pipeline)


SD = Family(
    "sd",
    "StableDiffusionPipeline",
    (TextEncoderSpec("tokenizer", "text_encoder", "last", False, "CLIPTextModel"),),
)
SDXL = Family(
    "sdxl",
    "StableDiffusionXLPipeline",
    (
        TextEncoderSpec("tokenizer", "text_encoder", "penultimate", False, "CLIPTextModel"),
        TextEncoderSpec(
            "tokenizer_2", "text_encoder_2", "penultimate", True, "CLIPTextModelWithProjection"
        ),
    ),
)
FAMILIES = {"sd": SD, "sdxl": SDXL}


def detect_family(model_index: dict[str, Any]) -> Family:
    """SD 1.x/2.x or SDXL (base), from a diffusers folder's model_index.json."""
    cls = str(model_index.get("_class_name", ""))
    if model_index.get("requires_aesthetics_score"):
        raise ExportError(f"{cls}: SDXL refiner pipelines are not supported", param="_class_name")
    if "text_encoder_2" in model_index:
        if model_index.get("text_encoder") in (None, [None, None]):
            raise ExportError(
                f"{cls}: pipelines without the first text encoder are not supported",
                param="text_encoder",
            )
        return SDXL
    if cls in ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline") or (
        "text_encoder" in model_index and "unet" in model_index
    ):
        return SD
    raise ExportError(
        f"model_index.json field '_class_name': unsupported pipeline class {cls!r} "
        "(expected a Stable Diffusion 1.x/2.x or SDXL pipeline)",
        param="_class_name",
    )
