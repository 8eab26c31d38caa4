"""``W2SDRuntime(engine_dir).sample(prompt)``: the Python face of the C++ core.

This layer owns defaults, input validation, tokenisation, the seed -> latents
mapping and image conversion; the loop, the UNets, the text encoder and the
VAE decoder run in the compiled core with the GIL released. It imports neither
torch, diffusers nor transformers.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from typing import Any, Callable, Union

import numpy as np

from .errors import BackendError, EngineDirError, InvalidArgumentError
from .latents import initial_latents
from .manifest import ROLES, Manifest, load_manifest
from .ort_library import find_ort_library
from .tokenizer import ClipTokenizer

ProgressCallback = Callable[[int, int], Union[bool, None]]

INVERSION_MODES = ("official", "exact")
OUTPUT_TYPES = ("pil", "np", "latent")
_BACKENDS = ("cpu",)
# ONNX Runtime GraphOptimizationLevel values.
_ORT_LEVEL_ALL = 99


def available_backends() -> list[str]:
    """Backends this machine can run (a backend is listed only if its library is present)."""
    try:
        find_ort_library()
    except Exception:
        return []
    return list(_BACKENDS)


def _core():  # type: ignore[no-untyped-def]
    from . import _core

    return _core


def scheduler_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The scheduler fields the C++ core takes, from a manifest's ``scheduler`` entry."""
    return {
        "num_train_timesteps": int(config["num_train_timesteps"]),
        "alphas_cumprod": np.asarray(config["alphas_cumprod"], dtype=np.float32),
        "set_alpha_to_one": bool(config["set_alpha_to_one"]),
        "steps_offset": int(config["steps_offset"]),
        "timestep_spacing": str(config["timestep_spacing"]),
        "prediction_type": str(config["prediction_type"]),
    }


def ddim_schedule(config: dict[str, Any], num_inference_steps: int) -> Any:
    """The C++ DdimSchedule for a scheduler config (timesteps, step, inverse_step)."""
    return _core().DdimSchedule(**scheduler_kwargs(config), num_inference_steps=num_inference_steps)


def to_uint8_images(image: np.ndarray) -> np.ndarray:
    """VAE output (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), as diffusers' postprocess."""
    x = np.clip(image / 2 + 0.5, 0.0, 1.0).transpose(0, 2, 3, 1)
    return np.round(x * 255).astype(np.uint8)


def _as_list(text: str | Sequence[str] | None, name: str, batch: int | None = None) -> list[str]:
    if text is None:
        items = [""] * (batch or 1)
    elif isinstance(text, str):
        items = [text] * (batch or 1)
    elif isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
        items = list(text)
    else:
        raise InvalidArgumentError(f"{name} must be a str or a list of str, got {type(text)!r}")
    if not items:
        raise InvalidArgumentError(f"{name} must not be empty")
    if batch is not None and len(items) != batch:
        raise InvalidArgumentError(f"{name} has {len(items)} entries, prompt has {batch}")
    return items


class W2SDRuntime:
    """A loaded engine dir. ``sample`` is thread-safe; sessions are shared across calls."""

    def __init__(
        self,
        engine_dir: str | os.PathLike[str],
        backend: str = "cpu",
        *,
        threads: int | None = None,
        verify_checksums: bool = True,
    ) -> None:
        if backend not in _BACKENDS:
            raise InvalidArgumentError(
                f"backend: unknown backend {backend!r} (known: {', '.join(_BACKENDS)})"
            )
        if backend not in available_backends():
            raise BackendError(
                f"backend {backend!r} is not available on this machine "
                f"(available: {available_backends() or 'none'})"
            )
        if threads is not None and (not isinstance(threads, int) or threads < 0):
            raise InvalidArgumentError(f"threads must be a non-negative int, got {threads!r}")
        self.manifest: Manifest = load_manifest(engine_dir)
        self.backend = backend
        built = self.manifest.backends.get(backend)
        if not built:
            raise EngineDirError(
                f"{self.manifest.root}: backend {backend!r} has not been built; run "
                f"`w2sd build {self.manifest.root} --backend {backend}`"
            )
        data = self.manifest.data
        files = built["files"]
        names = [f"unet{i}" for i in range(len(data["unets"]))] + ["text_encoder", "vae_decoder"]
        missing = [n for n in names if n not in files]
        if missing:
            raise EngineDirError(f"{self.manifest.root}: {backend} build lacks {missing}; rebuild")
        self.manifest.verify(
            sorted(built["artifacts"]) + [data["text"]["tokenizer"]], full=verify_checksums
        )

        text = data["text"]
        self._tokenizer = ClipTokenizer(
            self.manifest.path(text["tokenizer"]),
            int(text["max_length"]),
            int(text["pad_token_id"]),
        )
        self._engine = _core().Engine(
            library_path=str(find_ort_library()),
            unet_paths=[
                str(self.manifest.path(files[f"unet{i}"])) for i in range(len(data["unets"]))
            ],
            text_encoder_path=str(self.manifest.path(files["text_encoder"])),
            vae_decoder_path=str(self.manifest.path(files["vae_decoder"])),
            **scheduler_kwargs(data["scheduler"]),
            intra_op_threads=threads or 0,
            graph_optimization_level=_ORT_LEVEL_ALL,
        )
        self.last_stats: dict[str, Any] = {}

    # -- public API ---------------------------------------------------------------

    @property
    def defaults(self) -> dict[str, Any]:
        d = self.manifest.data
        return {
            **d["defaults"],
            "strong_guidance": d["roles"]["strong"]["guidance"],
            "weak_guidance": d["roles"]["weak"]["guidance"],
            "denoiser_guidance": d["roles"]["denoiser"]["guidance"],
            "height": d["image"]["default_height"],
            "width": d["image"]["default_width"],
        }

    def timesteps(self, num_inference_steps: int) -> list[int]:
        """The DDIM timesteps tau_0 > ... > tau_{T-1} this engine uses for T steps."""
        return list(ddim_schedule(self.manifest.scheduler, num_inference_steps).timesteps)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Token ids -> text encoder hidden states (len(texts), max_length, hidden)."""
        return self._engine.encode_text(self._tokenizer(texts))

    def sample(
        self,
        prompt: str | Sequence[str],
        negative_prompt: str | Sequence[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        reflection_steps: int | Sequence[int] | None = None,
        strong_guidance: float | None = None,
        weak_guidance: float | None = None,
        denoiser_guidance: float | None = None,
        inversion: str | None = None,
        seed: int | None = None,
        latents: np.ndarray | None = None,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "pil",
        callback: ProgressCallback | None = None,
    ) -> Any:
        """Generate one image per prompt with W2SD.

        Returns a PIL image (a list of them for a list of prompts) for
        ``output_type="pil"``, uint8 (B, H, W, 3) for ``"np"`` and the final
        float32 latents (B, C, H/8, W/8) for ``"latent"``. ``callback(done,
        total)`` is called after every step; returning False cancels
        (``w2sd.CancelledError``).
        """
        t_start = time.perf_counter()
        d = self.defaults
        if prompt is None:
            raise InvalidArgumentError("prompt must be a str or a list of str, got None")
        prompts = _as_list(prompt, "prompt")
        batch = len(prompts)
        negatives = _as_list(negative_prompt, "negative_prompt", batch)
        steps = d["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps <= 0:
            raise InvalidArgumentError(f"num_inference_steps must be a positive int, got {steps!r}")
        steps = int(steps)
        n_train = int(self.manifest.scheduler["num_train_timesteps"])
        if steps > n_train:
            raise InvalidArgumentError(
                f"num_inference_steps ({steps}) cannot exceed num_train_timesteps ({n_train})"
            )
        reflection = self._check_reflection(
            d["reflection_steps"] if reflection_steps is None else reflection_steps, steps
        )
        inversion = d["inversion"] if inversion is None else inversion
        if inversion not in INVERSION_MODES:
            raise InvalidArgumentError(
                f"inversion: unknown mode {inversion!r} (expected 'official' or 'exact')"
            )
        if output_type not in OUTPUT_TYPES:
            raise InvalidArgumentError(
                f"output_type: unknown {output_type!r} (expected one of {OUTPUT_TYPES})"
            )
        guidance = {
            "strong": d["strong_guidance"] if strong_guidance is None else strong_guidance,
            "weak": d["weak_guidance"] if weak_guidance is None else weak_guidance,
        }
        guidance["denoiser"] = (
            guidance["strong"]
            if denoiser_guidance is None and strong_guidance is not None
            else d["denoiser_guidance"]
            if denoiser_guidance is None
            else denoiser_guidance
        )
        for role, g in guidance.items():
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not np.isfinite(g):
                raise InvalidArgumentError(f"{role}_guidance must be a finite number, got {g!r}")
        x, seed_used = self._initial_latents(latents, seed, batch, height, width)

        # Text: one encoder call for [uncond; cond] when any role is guided.
        t0 = time.perf_counter()
        needs_uncond = any(float(g) != 1.0 for g in guidance.values())
        texts = (negatives + prompts) if needs_uncond else prompts
        emb = self.encode(texts)
        cond = np.ascontiguousarray(emb[-batch:])
        uncond = np.ascontiguousarray(emb[:batch]) if needs_uncond else None
        t_text = time.perf_counter() - t0

        roles = []
        for role in ROLES:
            g = float(guidance[role])
            unet = int(self.manifest.data["roles"][role]["unet"])
            roles.append((unet, g, cond, uncond if g != 1.0 else None))
        out, loop_stats = self._engine.run_loop(x, steps, reflection, inversion, roles, callback)
        stats: dict[str, Any] = {
            "seed": seed_used,
            "num_inference_steps": steps,
            "reflection": reflection,
            "text_encode_s": t_text,
            **loop_stats,
        }
        if output_type == "latent":
            stats["vae_decode_s"] = 0.0
            stats["e2e_s"] = time.perf_counter() - t_start
            self.last_stats = stats
            return out
        t0 = time.perf_counter()
        scaling = float(self.manifest.data["vae_scaling_factor"])
        image = self._engine.decode_latents(out / np.float32(scaling))
        images = to_uint8_images(image)
        stats["vae_decode_s"] = time.perf_counter() - t0
        stats["e2e_s"] = time.perf_counter() - t_start
        self.last_stats = stats
        if output_type == "np":
            return images
        from PIL import Image

        pil = [Image.fromarray(im) for im in images]
        return pil[0] if isinstance(prompt, str) else pil

    # -- validation ---------------------------------------------------------------

    @staticmethod
    def _check_reflection(value: Any, steps: int) -> int | list[int]:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= value <= steps - 1:
                raise InvalidArgumentError(
                    f"reflection_steps must be in [0, num_inference_steps - 1] = [0, {steps - 1}]"
                    f", got {value}"
                )
            return int(value)
        if isinstance(value, Sequence) and not isinstance(value, str):
            idx = list(value)
            if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in idx):
                raise InvalidArgumentError("reflection_steps list must hold ints")
            bad = [i for i in idx if not 0 <= i <= steps - 2]
            if bad:
                raise InvalidArgumentError(
                    f"reflection_steps indices {bad} outside [0, num_inference_steps - 2] = "
                    f"[0, {steps - 2}] (the last step cannot reflect)"
                )
            if len(set(idx)) != len(idx):
                raise InvalidArgumentError(f"reflection_steps has repeated indices: {idx}")
            return [int(i) for i in idx]
        raise InvalidArgumentError(
            f"reflection_steps must be an int or a list of step indices, got {value!r}"
        )

    def _check_size(self, name: str, value: int) -> int:
        img = self.manifest.data["image"]
        lo, hi, mult = img["min_size"], img["max_size"], img["size_multiple"]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InvalidArgumentError(f"{name} must be an int, got {value!r}")
        if value % 8 or value % mult:
            raise InvalidArgumentError(
                f"{name}={value} must be a multiple of {mult} for this engine"
            )
        if not lo <= value <= hi:
            raise InvalidArgumentError(
                f"{name}={value} is outside this engine's range [{lo}, {hi}]"
            )
        return int(value)

    def _initial_latents(
        self,
        latents: np.ndarray | None,
        seed: int | None,
        batch: int,
        height: int | None,
        width: int | None,
    ) -> tuple[np.ndarray, int | None]:
        d = self.manifest.data
        f = int(d["vae_scale_factor"])
        c = int(d["latent_channels"])
        if latents is not None:
            if not isinstance(latents, np.ndarray):
                raise InvalidArgumentError(f"latents must be a numpy array, got {type(latents)!r}")
            if latents.dtype != np.float32:
                raise InvalidArgumentError(f"latents must be float32, got {latents.dtype}")
            if latents.ndim != 4 or latents.shape[0] != batch or latents.shape[1] != c:
                raise InvalidArgumentError(
                    f"latents must have shape ({batch}, {c}, H/{f}, W/{f}), got {latents.shape}"
                )
            h, w = latents.shape[2] * f, latents.shape[3] * f
            if height is not None and height != h or width is not None and width != w:
                raise InvalidArgumentError(
                    f"height/width ({height}x{width}) disagree with latents shape {latents.shape}"
                )
            self._check_size("height (from latents)", h)
            self._check_size("width (from latents)", w)
            if not np.isfinite(latents).all():
                raise InvalidArgumentError("latents contain NaN or inf")
            return np.ascontiguousarray(latents), None
        h = self._check_size("height", d["image"]["default_height"] if height is None else height)
        w = self._check_size("width", d["image"]["default_width"] if width is None else width)
        if seed is None:
            seed = secrets.randbits(63)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidArgumentError(f"seed must be a non-negative int, got {seed!r}")
        return initial_latents(int(seed), (batch, c, h // f, w // f)), int(seed)
