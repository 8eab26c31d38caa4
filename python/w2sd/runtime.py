"""``W2SDRuntime(engine_dir).sample(prompt)``: the Python face of the C++ core.

This layer owns defaults, input validation, tokenisation, the seed -> latents
mapping and image conversion; the loop, the UNets, the text encoder and the
VAE decoder run in the compiled core with the GIL released. It imports neither
torch, diffusers nor transformers.
"""

from __future__ import annotations

import inspect
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import errors as errors_module
from .errors import BackendError, EngineDirError, InvalidArgumentError, W2SDError
from .latents import initial_latents
from .manifest import ROLES, Manifest, load_manifest
from .ort_library import find_ort_library
from .tokenizer import ClipTokenizer

ProgressCallback = Callable[[int, int], bool | None]

INVERSION_MODES = ("official", "exact")
OUTPUT_TYPES = ("pil", "np", "latent")
_BACKENDS = ("cpu", "cuda", "tensorrt")
_PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# ONNX Runtime GraphOptimizationLevel values.
_ORT_LEVEL_ALL = 99


def available_backends() -> list[str]:
    """Backends this machine can run: "cpu" with an ONNX Runtime library; "cuda" and
    "tensorrt" when this build has CUDA, a device is visible and the library (the
    onnxruntime-gpu wheel's) offers that execution provider."""
    try:
        path = find_ort_library()
        core = _core()
        core.load_ort_library(str(path))
    except Exception:
        return []
    found = ["cpu"]
    if core.cuda_compiled() and core.cuda_device_count() > 0:
        providers = set(core.available_providers())
        found += [b for b, p in _PROVIDERS.items() if p in providers]
    return found


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


@dataclass
class _Prepared:
    """A validated request: what the core needs, and what _finish needs afterwards."""

    latents: np.ndarray
    steps: int
    reflection: int | list[int]
    inversion: str
    roles: list[dict[str, Any]]
    callback: ProgressCallback | None
    output_type: str
    single: bool
    t_start: float
    stats: dict[str, Any]


class W2SDRuntime:
    """A loaded engine dir. ``sample`` is thread-safe; sessions are shared across calls."""

    def __init__(
        self,
        engine_dir: str | os.PathLike[str],
        backend: str = "cpu",
        *,
        threads: int | None = None,
        verify_checksums: bool = True,
        lanes: int = 1,
        device_id: int = 0,
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
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise InvalidArgumentError(f"lanes must be a positive int, got {lanes!r}")
        self.lanes = lanes
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
        names = [f"unet{i}" for i in range(len(data["unets"]))]
        names += [f"text_encoder{i}" for i in range(len(data["text"]["encoders"]))]
        names.append("vae_decoder")
        missing = [n for n in names if n not in files]
        if missing:
            raise EngineDirError(f"{self.manifest.root}: {backend} build lacks {missing}; rebuild")
        tokenizers = [e["tokenizer"] for e in data["text"]["encoders"]]
        self.manifest.verify(sorted(built["artifacts"]) + tokenizers, full=verify_checksums)

        text = data["text"]
        self._encoders = text["encoders"]
        self._tokenizers = [
            ClipTokenizer(
                self.manifest.path(e["tokenizer"]), int(e["max_length"]), int(e["pad_token_id"])
            )
            for e in self._encoders
        ]
        self._engine = _core().Engine(
            library_path=str(find_ort_library()),
            unet_paths=[
                str(self.manifest.path(files[f"unet{i}"])) for i in range(len(data["unets"]))
            ],
            unet_inputs=list(data["models"]["unet"]["inputs"]),
            text_encoder_paths=[
                str(self.manifest.path(files[f"text_encoder{i}"]))
                for i in range(len(self._encoders))
            ],
            text_encoder_outputs=[list(e["outputs"]) for e in self._encoders],
            vae_decoder_path=str(self.manifest.path(files["vae_decoder"])),
            **scheduler_kwargs(data["scheduler"]),
            intra_op_threads=threads or 0,
            graph_optimization_level=_ORT_LEVEL_ALL,
            provider=backend,
            device_id=device_id,
            lanes=lanes,
            provider_options=self._provider_options(built),
        )
        self.last_stats: dict[str, Any] = {}
        self.last_many_stats: list[dict[str, Any] | None] = []

    def _provider_options(self, built: dict[str, Any]) -> dict[str, str]:
        """TensorRT: the build's options, with cache paths inside this engine dir."""
        if self.backend != "tensorrt":
            return {}
        opts = dict(built.get("provider_options", {}))
        cache = str(self.manifest.path("tensorrt/cache"))
        opts.update(trt_engine_cache_path=cache, trt_timing_cache_path=cache)
        return opts

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

    @property
    def num_unet_sessions(self) -> int:
        """UNet sessions held in memory: one per distinct UNet artifact."""
        return int(self._engine.num_unets)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Texts -> (hidden states (N, L, D), pooled embeddings (N, P) or None).

        SD 1.x/2.x: the encoder's last hidden state. SDXL: both encoders'
        penultimate hidden states concatenated, pooled from encoder 2."""
        hidden = []
        pooled = None
        for i, (enc, tok) in enumerate(zip(self._encoders, self._tokenizers, strict=True)):
            outputs = self._engine.encode_text(i, tok(texts))
            hidden.append(outputs[0])
            if "text_embeds" in enc["outputs"]:
                pooled = outputs[enc["outputs"].index("text_embeds")]
        return np.concatenate(hidden, axis=-1) if len(hidden) > 1 else hidden[0], pooled

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
        strong_prompt: str | Sequence[str] | None = None,
        weak_prompt: str | Sequence[str] | None = None,
        denoiser_prompt: str | Sequence[str] | None = None,
        strong_negative_prompt: str | Sequence[str] | None = None,
        weak_negative_prompt: str | Sequence[str] | None = None,
        denoiser_negative_prompt: str | Sequence[str] | None = None,
    ) -> Any:
        """Generate one image per prompt with W2SD.

        Returns a PIL image (a list of them for a list of prompts) for
        ``output_type="pil"``, uint8 (B, H, W, 3) for ``"np"`` and the final
        float32 latents (B, C, H/8, W/8) for ``"latent"``. ``callback(done,
        total)`` is called after every step; returning False cancels
        (``w2sd.CancelledError``).

        Condition gap: ``strong_prompt``/``weak_prompt``/``denoiser_prompt`` and
        the matching ``*_negative_prompt`` override ``prompt``/``negative_prompt``
        for one role (e.g. an LLM-refined prompt on the strong side).
        """
        prepared = self._prepare({k: v for k, v in locals().items() if k != "self"})
        out, loop_stats = self._engine.run_loop(
            prepared.latents,
            prepared.steps,
            prepared.reflection,
            prepared.inversion,
            prepared.roles,
            callback,
        )
        return self._finish(prepared, out, loop_stats)

    def sample_many(
        self,
        requests: Sequence[dict[str, Any]],
        *,
        lanes: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run several requests with up to ``lanes`` in flight at once.

        Each request is a dict of ``sample``'s keyword arguments (``prompt``
        included). Results come back in request order. Requests start in order
        and a free lane always takes the next one; a request that fails or is
        cancelled (its ``callback`` returned False) does not affect the others:
        with ``return_exceptions=True`` its slot holds the exception, otherwise
        the first failure is raised after every request has finished.
        """
        lanes = self.lanes if lanes is None else lanes
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise InvalidArgumentError(f"lanes must be a positive int, got {lanes!r}")
        prepared: list[_Prepared | Exception] = []
        for i, req in enumerate(requests):
            if not isinstance(req, dict) or "prompt" not in req:
                err: Exception = InvalidArgumentError(
                    f"requests[{i}] must be a dict of sample() arguments with a 'prompt'"
                )
            else:
                try:
                    bound = _SAMPLE_SIGNATURE.bind(self, **req)
                except TypeError as e:
                    err = InvalidArgumentError(f"requests[{i}]: {e}")
                else:
                    bound.apply_defaults()
                    try:
                        args = {k: v for k, v in bound.arguments.items() if k != "self"}
                        prepared.append(self._prepare(args))
                        continue
                    except W2SDError as e:
                        err = e
            if not return_exceptions:
                raise err
            prepared.append(err)
        runnable = [p for p in prepared if isinstance(p, _Prepared)]
        results = self._engine.run_many(
            [
                {
                    "latents": p.latents,
                    "num_inference_steps": p.steps,
                    "reflection": p.reflection,
                    "inversion": p.inversion,
                    "roles": p.roles,
                    "progress": p.callback,
                }
                for p in runnable
            ],
            lanes,
        )
        outputs: list[Any] = []
        many_stats: list[dict[str, Any] | None] = []
        by_request = iter(zip(runnable, results, strict=True))
        first_error: Exception | None = None
        for p in prepared:
            if not isinstance(p, _Prepared):
                outputs.append(p)
                many_stats.append(None)
                continue
            _, r = next(by_request)
            if r["ok"]:
                stats = {
                    k: r[k]
                    for k in (
                        "unet_calls",
                        "loop_s",
                        "unet_s",
                        "lane",
                        "host_copies_in_loop",
                        "start_seq",
                        "end_seq",
                    )
                }
                outputs.append(self._finish(p, r["latents"], stats))
                many_stats.append(self.last_stats)
            else:
                err = getattr(errors_module, r["error_class"])(r["error"])
                first_error = first_error or err
                outputs.append(err)
                many_stats.append({k: r[k] for k in ("lane", "start_seq", "end_seq")})
        # Per request: lane, start_seq/end_seq (global order of starts and ends), times.
        self.last_many_stats = many_stats
        if first_error is not None and not return_exceptions:
            raise first_error
        return outputs

    def _prepare(self, args: dict[str, Any]) -> _Prepared:
        """Validate sample()'s arguments (all of them, defaults filled in), make the initial
        latents and encode every role's text."""
        a = SimpleNamespace(**args)
        t_start = time.perf_counter()
        d = self.defaults
        if a.prompt is None:
            raise InvalidArgumentError("prompt must be a str or a list of str, got None")
        prompts = _as_list(a.prompt, "prompt")
        batch = len(prompts)
        if a.negative_prompt is not None:
            _as_list(a.negative_prompt, "negative_prompt", batch)
        role_text = {
            "strong": (a.strong_prompt, a.strong_negative_prompt),
            "weak": (a.weak_prompt, a.weak_negative_prompt),
            "denoiser": (a.denoiser_prompt, a.denoiser_negative_prompt),
        }
        role_prompts: dict[str, list[str]] = {}
        role_negatives: dict[str, list[str] | None] = {}
        for role, (p, n) in role_text.items():
            role_prompts[role] = prompts if p is None else _as_list(p, f"{role}_prompt", batch)
            n = a.negative_prompt if n is None else n
            role_negatives[role] = (
                None if n is None else _as_list(n, f"{role}_negative_prompt", batch)
            )
        steps = d["num_inference_steps"] if a.num_inference_steps is None else a.num_inference_steps
        if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps <= 0:
            raise InvalidArgumentError(f"num_inference_steps must be a positive int, got {steps!r}")
        steps = int(steps)
        n_train = int(self.manifest.scheduler["num_train_timesteps"])
        if steps > n_train:
            raise InvalidArgumentError(
                f"num_inference_steps ({steps}) cannot exceed num_train_timesteps ({n_train})"
            )
        reflection = self._check_reflection(
            d["reflection_steps"] if a.reflection_steps is None else a.reflection_steps, steps
        )
        inversion = d["inversion"] if a.inversion is None else a.inversion
        if inversion not in INVERSION_MODES:
            raise InvalidArgumentError(
                f"inversion: unknown mode {inversion!r} (expected 'official' or 'exact')"
            )
        if a.output_type not in OUTPUT_TYPES:
            raise InvalidArgumentError(
                f"output_type: unknown {a.output_type!r} (expected one of {OUTPUT_TYPES})"
            )
        guidance = {
            "strong": d["strong_guidance"] if a.strong_guidance is None else a.strong_guidance,
            "weak": d["weak_guidance"] if a.weak_guidance is None else a.weak_guidance,
        }
        guidance["denoiser"] = (
            guidance["strong"]
            if a.denoiser_guidance is None and a.strong_guidance is not None
            else d["denoiser_guidance"]
            if a.denoiser_guidance is None
            else a.denoiser_guidance
        )
        for role, g in guidance.items():
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not np.isfinite(g):
                raise InvalidArgumentError(f"{role}_guidance must be a finite number, got {g!r}")
        x, seed_used = self._initial_latents(a.latents, a.seed, batch, a.height, a.width)

        t0 = time.perf_counter()
        h, w = (
            x.shape[2] * int(self.manifest.data["vae_scale_factor"]),
            x.shape[3] * int(self.manifest.data["vae_scale_factor"]),
        )
        roles = self._conditioning(guidance, role_prompts, role_negatives, batch, h, w)
        t_text = time.perf_counter() - t0

        return _Prepared(
            latents=x,
            steps=steps,
            reflection=reflection,
            inversion=inversion,
            roles=roles,
            callback=a.callback,
            output_type=a.output_type,
            single=isinstance(a.prompt, str),
            t_start=t_start,
            stats={
                "seed": seed_used,
                "num_inference_steps": steps,
                "reflection": reflection,
                "text_encode_s": t_text,
            },
        )

    def _finish(self, p: _Prepared, out: np.ndarray, loop_stats: dict[str, Any]) -> Any:
        """Decode (unless latents were asked for), convert, and record the stats."""
        stats: dict[str, Any] = {**p.stats, **loop_stats}
        if p.output_type == "latent":
            stats["vae_decode_s"] = 0.0
            stats["e2e_s"] = time.perf_counter() - p.t_start
            self.last_stats = stats
            return out
        t0 = time.perf_counter()
        scaling = float(self.manifest.data["vae_scaling_factor"])
        image = self._engine.decode_latents(out / np.float32(scaling))
        images = to_uint8_images(image)
        stats["vae_decode_s"] = time.perf_counter() - t0
        stats["e2e_s"] = time.perf_counter() - p.t_start
        self.last_stats = stats
        if p.output_type == "np":
            return images
        from PIL import Image

        pil = [Image.fromarray(im) for im in images]
        return pil[0] if p.single else pil

    def _conditioning(
        self,
        guidance: dict[str, float],
        prompts: dict[str, list[str]],
        negatives: dict[str, list[str] | None],
        batch: int,
        height: int,
        width: int,
    ) -> list[dict[str, Any]]:
        """Per-role conditioning for the core, with one text-encoder pass over all unique texts.

        Unconditional: the role's negative prompt, else "" (SD 1.x/2.x) or zeros
        when the pipeline sets force_zeros_for_empty_prompt (SDXL), as diffusers."""
        zeros_for_empty = bool(self.manifest.data["text"]["force_zeros_for_empty_prompt"])
        texts: dict[str, int] = {}
        plan: dict[str, tuple[list[str], list[str] | None]] = {}
        for role in ROLES:
            guided = float(guidance[role]) != 1.0
            uncond = None
            if guided:
                uncond = negatives[role]
                if uncond is None and not zeros_for_empty:
                    uncond = [""] * batch
            plan[role] = (prompts[role], uncond)
            for t in prompts[role] + (uncond or []):
                texts.setdefault(t, len(texts))
        hidden, pooled = self.encode(list(texts))
        added = self.manifest.data.get("unet_added_conditions")
        time_ids = None
        if added:
            # (orig_h, orig_w, crop_top, crop_left, target_h, target_w), diffusers' defaults
            row = np.array([height, width, 0, 0, height, width], dtype=np.float32)
            time_ids = np.ascontiguousarray(np.broadcast_to(row, (batch, 6)))

        def rows(ts: list[str], table: np.ndarray | None) -> np.ndarray | None:
            if table is None:
                return None
            return np.ascontiguousarray(table[[texts[t] for t in ts]])

        roles = []
        for role in ROLES:
            g = float(guidance[role])
            cond_texts, uncond_texts = plan[role]
            entry: dict[str, Any] = {
                "unet": int(self.manifest.data["roles"][role]["unet"]),
                "guidance": g,
                "cond": rows(cond_texts, hidden),
                "cond_pooled": rows(cond_texts, pooled) if added else None,
                "time_ids": time_ids,
            }
            if g != 1.0:
                if uncond_texts is None:  # force_zeros_for_empty_prompt
                    entry["uncond"] = np.zeros_like(entry["cond"])
                    entry["uncond_pooled"] = np.zeros_like(entry["cond_pooled"]) if added else None
                else:
                    entry["uncond"] = rows(uncond_texts, hidden)
                    entry["uncond_pooled"] = rows(uncond_texts, pooled) if added else None
            roles.append(entry)
        return roles

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


# sample()'s parameters: sample_many() checks each request against them.
_SAMPLE_SIGNATURE = inspect.signature(W2SDRuntime.sample)
