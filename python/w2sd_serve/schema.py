"""The HTTP API's bodies: OpenAI's Images API shape plus W2SD's fields.

The W2SD fields are ``SampleRequest``'s own (generated from its dataclass fields), and
their values are checked by ``SampleRequest`` and the runtime, not here: the body model
only parses JSON. What is HTTP-specific (``n``, ``size``, ``response_format``, the limits
of a public endpoint) is checked in ``to_sample_request``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from w2sd.errors import InvalidArgumentError
from w2sd.request import SampleRequest

# SampleRequest fields a JSON body may set (not the Python-only ones).
_NOT_IN_BODY = {"prompt", "latents", "output_type", "callback", "height", "width"}
W2SD_FIELDS = tuple(f.name for f in fields(SampleRequest) if f.name not in _NOT_IN_BODY)


class _OpenAIImageFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="text prompt")
    n: int = Field(default=1, description="number of images (one batch)")
    size: str | None = Field(default=None, description='"WIDTHxHEIGHT" (default: the engine\'s)')
    response_format: Literal["b64_json"] = Field(
        default="b64_json", description="only b64_json: images come back in the body"
    )
    stream: bool = Field(default=False, description="Server-Sent Events: progress, then result")
    # Sent by OpenAI clients; accepted and ignored (one engine per server).
    model: str | None = None
    user: str | None = None
    quality: str | None = None
    style: str | None = None


ImageGenerationRequest = create_model(  # type: ignore[call-overload]
    "ImageGenerationRequest",
    __base__=_OpenAIImageFields,
    **{
        name: (Any, Field(default=None, description=f.metadata.get("help")))
        for f in fields(SampleRequest)
        if (name := f.name) in W2SD_FIELDS
    },
)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of a public endpoint."""

    max_n: int = 4
    max_prompt_chars: int = 2000
    max_body_bytes: int = 1 << 20


def _parse_size(size: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InvalidArgumentError(
            f"size must be 'WIDTHxHEIGHT' (e.g. '512x512'), got {size!r}", param="size"
        ) from None
    return w, h


def to_sample_request(body: Any, limits: Limits) -> SampleRequest:
    """The body -> a SampleRequest (seed drawn here when absent, so it can be reported)."""
    if body.n < 1 or body.n > limits.max_n:
        raise InvalidArgumentError(f"n must be in [1, {limits.max_n}], got {body.n}", param="n")
    texts = {"prompt": body.prompt}
    texts.update({k: getattr(body, k) for k in W2SD_FIELDS if k.endswith("prompt")})
    for name, text in texts.items():
        if isinstance(text, str) and len(text) > limits.max_prompt_chars:
            raise InvalidArgumentError(
                f"{name} is {len(text)} characters, the limit is {limits.max_prompt_chars}",
                param=name,
            )
    width = height = None
    if body.size is not None:
        width, height = _parse_size(body.size)
    options = {k: getattr(body, k) for k in W2SD_FIELDS}
    if isinstance(options.get("reflection_steps"), list):
        options["reflection_steps"] = tuple(options["reflection_steps"])
    if options.get("seed") is None:
        options["seed"] = secrets.randbits(63)
    return SampleRequest(
        prompt=[body.prompt] * body.n,
        width=width,
        height=height,
        output_type="np",
        **options,
    )


def error_body(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}
