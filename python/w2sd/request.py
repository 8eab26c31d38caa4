"""``SampleRequest``: one typed, frozen request that the Python API, ``sample_many``, the
CLI and the HTTP server all build, validated once.

Validation happens in two places, each once: ``SampleRequest(...)`` checks what needs no
engine (types, signs, finiteness), ``resolve(engine)`` fills the engine's defaults and
checks what depends on it (step counts, the reflection window, image sizes, latents
shape; for an unconditional denoiser engine: no text, guidance 1, explicit latents).
Every failure is an ``InvalidArgumentError`` whose ``param`` names the field.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .errors import InvalidArgumentError
from .latents import initial_latents
from .manifest import ROLES, EngineManifest
from .native import core

ProgressCallback = Callable[[int, int], bool | None]
TextArg = str | Sequence[str] | None

INVERSION_MODES = ("official", "exact")
OUTPUT_TYPES = ("pil", "np", "latent")


def parse_reflection(text: str) -> int | tuple[int, ...]:
    """CLI form: '12' -> 12 (the first 12 steps); '0,2,4' -> explicit step indices."""
    try:
        if "," in text:
            return tuple(int(p) for p in text.split(",") if p.strip())
        return int(text)
    except ValueError:
        raise ValueError(
            f"expected an int or a comma-separated list of ints, got {text!r}"
        ) from None


def _opt(help: str, flag: str | None = None, **cli: Any) -> Any:
    """A request field with default None; `flag` (and argparse settings) exposes it in the CLI."""
    return field(default=None, metadata={"help": help, "flag": flag, **cli})


def _role_lora(role: str) -> Any:
    return _opt(
        f"LoRA scale of the {role} role, for an engine exported with its LoRA unfused "
        "(--lora-mode input; default: the scale given at export)",
        f"--{role}-lora-scale",
        type=float,
    )


def _role_text(role: str, negative: bool) -> Any:
    what = "negative prompt" if negative else "prompt"
    flag = f"--{role}-{'negative-' if negative else ''}prompt"
    return _opt(f"{what} for the {role} role only (condition gap; default: the common one)", flag)


@dataclass(frozen=True, kw_only=True, eq=False)
class SampleRequest:
    """Everything one ``sample`` call takes. None means "the engine's default"."""

    prompt: TextArg = _opt("text prompt, or a list of them (one image each)")
    negative_prompt: TextArg = _opt("negative prompt (default: none)", "--negative-prompt")
    num_inference_steps: int | None = _opt(
        "number of DDIM steps T (default: the engine's)", "--steps", type=int
    )
    reflection_steps: int | Sequence[int] | None = _opt(
        "reflect on the first N steps, or on the listed step indices (default: the engine's)",
        "--reflection-steps",
        type=parse_reflection,
        metavar="N|I,J,...",
    )
    strong_guidance: float | None = _opt(
        "guidance scale of the strong role", "--strong-guidance", type=float
    )
    weak_guidance: float | None = _opt(
        "guidance scale of the weak role", "--weak-guidance", type=float
    )
    denoiser_guidance: float | None = _opt(
        "guidance scale of the denoiser role (default: strong's)",
        "--denoiser-guidance",
        type=float,
    )
    inversion: str | None = _opt(
        "official: the authors' inversion timestep (tau_{i+1}); exact: textbook DDIM "
        "inversion (tau_i)",
        "--inversion",
        choices=INVERSION_MODES,
    )
    seed: int | None = _opt("seed of the initial latents (default: random)", "--seed", type=int)
    latents: np.ndarray | None = _opt("explicit initial latents, float32 (B, C, H/f, W/f)")
    height: int | None = _opt("image height in pixels", "--height", type=int)
    width: int | None = _opt("image width in pixels", "--width", type=int)
    output_type: str = field(default="pil", metadata={"help": "pil, np or latent"})
    strong_prompt: TextArg = _role_text("strong", False)
    weak_prompt: TextArg = _role_text("weak", False)
    denoiser_prompt: TextArg = _role_text("denoiser", False)
    strong_negative_prompt: TextArg = _role_text("strong", True)
    weak_negative_prompt: TextArg = _role_text("weak", True)
    denoiser_negative_prompt: TextArg = _role_text("denoiser", True)
    strong_lora_scale: float | None = _role_lora("strong")
    weak_lora_scale: float | None = _role_lora("weak")
    denoiser_lora_scale: float | None = _role_lora("denoiser")
    callback: ProgressCallback | None = _opt("callback(done, total) after each step; False cancels")

    @classmethod
    def from_options(
        cls, prompt: Any = None, negative_prompt: Any = None, **options: Any
    ) -> SampleRequest:
        """``sample``'s arguments -> a request; an unknown keyword is an InvalidArgumentError."""
        if isinstance(prompt, SampleRequest):
            if negative_prompt is not None or options:
                raise InvalidArgumentError("pass either a SampleRequest or keyword arguments")
            return prompt
        unknown = sorted(set(options) - FIELD_NAMES)
        if unknown:
            raise InvalidArgumentError(
                f"unknown sample argument(s) {unknown} (known: {sorted(FIELD_NAMES)})",
                param=unknown[0],
            )
        return cls(prompt=prompt, negative_prompt=negative_prompt, **options)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        batch = None
        if self.prompt is not None:
            set_(self, "prompt", _text(self.prompt, "prompt", None))
            batch = None if isinstance(self.prompt, str) else len(self.prompt)
        for name in ("negative_prompt", *(f"{r}_{k}" for r in ROLES for k in _ROLE_TEXT)):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, _text(value, name, batch))
        set_(self, "num_inference_steps", _positive_int(self.num_inference_steps))
        set_(self, "reflection_steps", _reflection(self.reflection_steps))
        for role in ROLES:
            for name in (f"{role}_guidance", f"{role}_lora_scale"):
                set_(self, name, _finite(getattr(self, name), name))
        if self.inversion is not None and self.inversion not in INVERSION_MODES:
            raise InvalidArgumentError(
                f"inversion: unknown mode {self.inversion!r} (expected 'official' or 'exact')",
                param="inversion",
            )
        if self.output_type not in OUTPUT_TYPES:
            raise InvalidArgumentError(
                f"output_type: unknown {self.output_type!r} (expected one of {OUTPUT_TYPES})",
                param="output_type",
            )
        if self.seed is not None:
            if not _is_int(self.seed) or self.seed < 0:
                raise InvalidArgumentError(
                    f"seed must be a non-negative int, got {self.seed!r}", param="seed"
                )
            set_(self, "seed", int(self.seed))
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise InvalidArgumentError(f"{name} must be an int, got {value!r}", param=name)
        if self.latents is not None:
            _check_latents(self.latents)
        if self.callback is not None and not callable(self.callback):
            raise InvalidArgumentError("callback must be callable", param="callback")

    @property
    def prompts(self) -> list[str]:
        if self.prompt is None:
            return []
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def resolve(self, engine: EngineManifest, schedule: Callable[[int], Any]) -> ResolvedRequest:
        """Fill the engine's defaults and check everything that depends on the engine.

        ``schedule(T)`` builds the core's DDIM schedule (which checks T against the
        scheduler); the reflection window is checked by the core's own function."""
        if self.prompt is None and not engine.unconditional:
            raise InvalidArgumentError(
                "prompt must be a str or a list of str, got None", param="prompt"
            )
        d = engine.defaults
        steps = (
            d.num_inference_steps if self.num_inference_steps is None else self.num_inference_steps
        )
        timesteps = _as_param("num_inference_steps", lambda: list(schedule(steps).timesteps))
        reflection: int | list[int] = (
            d.reflection_steps if self.reflection_steps is None else self.reflection_steps  # type: ignore[assignment]
        )
        reflection = reflection if isinstance(reflection, int) else list(reflection)
        window = _as_param("reflection_steps", lambda: core().reflection_window(steps, reflection))
        if engine.unconditional:
            latents = self._unconditional_latents(engine)
            return ResolvedRequest(
                request=self,
                batch=latents.shape[0],
                num_inference_steps=steps,
                timesteps=timesteps,
                reflection=reflection,
                unet_calls=steps + 2 * len(window),
                inversion=self.inversion or d.inversion,
                guidance=dict.fromkeys(ROLES, 1.0),
                lora_scales=dict.fromkeys(ROLES),
                prompts={r: [] for r in ROLES},
                negative_prompts=dict.fromkeys(ROLES),
                latents=latents,
                seed=None,
                height=latents.shape[2],
                width=latents.shape[3],
            )

        prompts = self.prompts
        role_prompts, role_negatives = self._role_texts(prompts)
        guidance, lora_scales = self._guidance(engine), self._lora_scales(engine)
        latents, seed = self._initial_latents(engine, len(prompts))
        f = engine.vae_scale_factor
        return ResolvedRequest(
            request=self,
            batch=len(prompts),
            num_inference_steps=steps,
            timesteps=timesteps,
            reflection=reflection,
            unet_calls=steps + 2 * len(window),
            inversion=self.inversion or d.inversion,
            guidance=guidance,
            lora_scales=lora_scales,
            prompts=role_prompts,
            negative_prompts=role_negatives,
            latents=latents,
            seed=seed,
            height=latents.shape[2] * f,
            width=latents.shape[3] * f,
        )

    def _guidance(self, engine: EngineManifest) -> dict[str, float]:
        """Per role: the request's guidance, else the engine's (the denoiser follows an asked
        strong guidance)."""
        strong = self.strong_guidance
        return {
            "strong": engine.role("strong").guidance if strong is None else strong,
            "weak": engine.role("weak").guidance
            if self.weak_guidance is None
            else self.weak_guidance,
            "denoiser": self.denoiser_guidance
            if self.denoiser_guidance is not None
            else strong
            if strong is not None
            else engine.role("denoiser").guidance,
        }

    def _role_texts(
        self, prompts: list[str]
    ) -> tuple[dict[str, list[str]], dict[str, list[str] | None]]:
        """Per role: its prompts and negative prompts (None: "" or zeros), one per image."""
        role_prompts: dict[str, list[str]] = {}
        role_negatives: dict[str, list[str] | None] = {}
        for role in ROLES:
            p = getattr(self, f"{role}_prompt")
            n = getattr(self, f"{role}_negative_prompt")
            n = self.negative_prompt if n is None else n
            role_prompts[role] = prompts if p is None else _broadcast(p, len(prompts))
            role_negatives[role] = None if n is None else _broadcast(n, len(prompts))
        return role_prompts, role_negatives

    def _lora_scales(self, engine: EngineManifest) -> dict[str, float | None]:
        """Per role: the asked LoRA scale, else the engine's; refused for a UNet without one."""
        lora_scales: dict[str, float | None] = {}
        for role in ROLES:
            name = f"{role}_lora_scale"
            asked = getattr(self, name)
            if asked is not None and engine.lora_input(role) is None:
                raise InvalidArgumentError(
                    f"{name}: this engine's {role} UNet takes no LoRA scale (no LoRA, or one "
                    f"fused at export); export with --{role}-lora FILE:SCALE --lora-mode input "
                    "to choose the scale per request",
                    param=name,
                )
            lora_scales[role] = engine.role(role).lora_scale if asked is None else asked
        return lora_scales

    def _unconditional_latents(self, engine: EngineManifest) -> np.ndarray:
        """Check a request for an unconditional denoiser engine; return its latents."""
        text_fields = ["prompt", "negative_prompt"] + [
            f"{r}_{k}" for r in ROLES for k in _ROLE_TEXT
        ]
        for name in text_fields:
            if getattr(self, name) is not None:
                raise InvalidArgumentError(
                    f"{name}: this engine's denoisers are unconditional; they take no text",
                    param=name,
                )
        for role in ROLES:
            for name, off in ((f"{role}_guidance", 1.0), (f"{role}_lora_scale", None)):
                value = getattr(self, name)
                if value is not None and value != off:
                    raise InvalidArgumentError(
                        f"{name}={value}: an unconditional denoiser has nothing to "
                        + ("guide (guidance must be 1)" if off else "scale (no LoRA)"),
                        param=name,
                    )
        if engine.models.vae_decoder is None and self.output_type != "latent":
            raise InvalidArgumentError(
                f"output_type={self.output_type!r}: this engine has no VAE decoder; "
                "ask for output_type='latent'",
                param="output_type",
            )
        x = self.latents
        if x is None:
            raise InvalidArgumentError(
                "latents are required: a denoiser engine samples from the initial latents "
                "you give it, float32 (B, C, H, W)",
                param="latents",
            )
        for name in ("seed", "height", "width"):
            if getattr(self, name) is not None:
                raise InvalidArgumentError(
                    f"{name}: a denoiser engine takes its shape and noise from `latents`",
                    param=name,
                )
        assert engine.denoiser is not None
        want = engine.denoiser.sample_shape
        if any(w is not None and w != got for w, got in zip(want, x.shape[1:], strict=True)):
            shown = ", ".join("any" if w is None else str(w) for w in want)
            raise InvalidArgumentError(
                f"latents must have shape (B, {shown}) for this engine's denoisers, got {x.shape}",
                param="latents",
            )
        return np.ascontiguousarray(x)

    def _initial_latents(self, engine: EngineManifest, batch: int) -> tuple[np.ndarray, int | None]:
        f, c = engine.vae_scale_factor, engine.latent_channels
        x = self.latents
        if x is not None:
            if x.shape[0] != batch or x.shape[1] != c:
                raise InvalidArgumentError(
                    f"latents must have shape ({batch}, {c}, H/{f}, W/{f}), got {x.shape}",
                    param="latents",
                )
            h, w = x.shape[2] * f, x.shape[3] * f
            if (self.height is not None and self.height != h) or (
                self.width is not None and self.width != w
            ):
                raise InvalidArgumentError(
                    f"height/width ({self.height}x{self.width}) disagree with latents shape "
                    f"{x.shape}",
                    param="latents",
                )
            _check_size(engine, "height (from latents)", h, "latents")
            _check_size(engine, "width (from latents)", w, "latents")
            return np.ascontiguousarray(x), None
        img = engine.image
        h = _check_size(
            engine, "height", img.default_height if self.height is None else self.height
        )
        w = _check_size(engine, "width", img.default_width if self.width is None else self.width)
        seed = secrets.randbits(63) if self.seed is None else self.seed
        return initial_latents(seed, (batch, c, h // f, w // f)), seed


@dataclass(frozen=True, eq=False)
class ResolvedRequest:
    """A request with the engine's defaults filled in and every check passed."""

    request: SampleRequest
    batch: int
    num_inference_steps: int
    timesteps: list[int]
    reflection: int | list[int]  # as the core takes it
    unet_calls: int  # T + 2 * (reflecting steps)
    inversion: str
    guidance: dict[str, float]
    lora_scales: dict[str, float | None]  # per role; None: its UNet takes no LoRA scale
    prompts: dict[str, list[str]]  # per role
    negative_prompts: dict[str, list[str] | None]  # per role; None: "" or zeros
    latents: np.ndarray
    seed: int | None  # None when explicit latents were given
    height: int
    width: int


_ROLE_TEXT = ("prompt", "negative_prompt")
FIELD_NAMES = frozenset(f.name for f in fields(SampleRequest))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _text(value: Any, name: str, batch: int | None) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(t, str) for t in value):
        items = tuple(value)
        if not items:
            raise InvalidArgumentError(f"{name} must not be empty", param=name)
        if batch is not None and len(items) != batch:
            raise InvalidArgumentError(
                f"{name} has {len(items)} entries, prompt has {batch}", param=name
            )
        return items
    raise InvalidArgumentError(
        f"{name} must be a str or a list of str, got {type(value).__name__}", param=name
    )


def _broadcast(value: str | Sequence[str], batch: int) -> list[str]:
    return [value] * batch if isinstance(value, str) else list(value)


def _positive_int(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value <= 0:
        raise InvalidArgumentError(
            f"num_inference_steps must be a positive int, got {value!r}",
            param="num_inference_steps",
        )
    return int(value)


def _reflection(value: Any) -> int | tuple[int, ...] | None:
    """Type checks only: the window itself is the core's to check (reflection_window)."""
    if value is None:
        return None
    if _is_int(value):
        return int(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not all(_is_int(i) for i in value):
            raise InvalidArgumentError(
                "reflection_steps list must hold ints", param="reflection_steps"
            )
        return tuple(int(i) for i in value)
    raise InvalidArgumentError(
        f"reflection_steps must be an int or a list of step indices, got {value!r}",
        param="reflection_steps",
    )


def _finite(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}", param=name)
    if not np.isfinite(value):
        raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}", param=name)
    return float(value)


def _check_latents(x: Any) -> None:
    if not isinstance(x, np.ndarray):
        raise InvalidArgumentError(
            f"latents must be a numpy array, got {type(x).__name__}", param="latents"
        )
    if x.dtype != np.float32:
        raise InvalidArgumentError(f"latents must be float32, got {x.dtype}", param="latents")
    if x.ndim != 4:
        raise InvalidArgumentError(
            f"latents must have shape (B, C, H/f, W/f), got {x.shape}", param="latents"
        )
    if not np.isfinite(x).all():
        raise InvalidArgumentError("latents contain NaN or inf", param="latents")


def _check_size(engine: EngineManifest, name: str, value: Any, param: str | None = None) -> int:
    img = engine.image
    param = param or name
    if not _is_int(value):
        raise InvalidArgumentError(f"{name} must be an int, got {value!r}", param=param)
    if value % 8 or value % img.size_multiple:
        raise InvalidArgumentError(
            f"{name}={value} must be a multiple of {img.size_multiple} for this engine",
            param=param,
        )
    if not img.min_size <= value <= img.max_size:
        raise InvalidArgumentError(
            f"{name}={value} is outside this engine's range [{img.min_size}, {img.max_size}]",
            param=param,
        )
    return int(value)


def _as_param(param: str, check: Callable[[], Any]) -> Any:
    """Run a core check; its InvalidArgumentError gets `param` attached."""
    try:
        return check()
    except InvalidArgumentError as e:
        raise InvalidArgumentError(str(e), param=param) from None
