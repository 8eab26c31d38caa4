"""``w2sd build ENGINE_DIR --backend tensorrt``: TensorRT engines through ONNX Runtime's
TensorRT EP, built ahead of time and stored in the engine dir.

Per model (UNets, text encoders, VAE decoder): one explicit optimisation profile over the
engine's whole range (image sizes from the manifest, batch up to ``--max-batch``), fp16
(the VAE stays fp32 where the pipeline needs it: ``fp16.vae_keeps_fp32``), and an
EP-context model ``tensorrt/<name>_ctx.onnx`` whose ``ep_cache_context`` names its engine
file relative to the context model's directory (``cache/...``): ONNX Runtime refuses
absolute and ``..`` paths there when it loads one. Serving loads the context models only:
no engine is built at run time, nothing under ``tensorrt/`` is written after the build,
and a request beyond the profiles is refused before the loop starts. The timing cache
(``tensorrt/timing``) speeds up a rebuild and is outside the checksummed artifacts.

Needs onnxruntime-gpu with TensorRT and a CUDA device; runs in a build process of its own
(``build.py``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from w2sd.errors import BackendError, EngineDirError
from w2sd.manifest import Manifest

from .common import artifacts_under, model_kind, model_sources, replace_dir
from .fp16 import model_precisions

BACKEND = "tensorrt"
CACHE_DIR = "cache"  # engines, relative to the context models' directory (tensorrt/)
TIMING_DIR = "timing"  # the timing cache: not an artifact (a rebuild may rewrite it)
EP_CONTEXT_OP = "EPContext"

# A denoiser engine's symbolic C/H/W dimensions: (min, opt, max) in the profile.
DENOISER_FREE_DIM = (1, 16, 256)
# Distinct texts one request may encode per encoder: 3 roles x (prompts + negatives).
TEXTS_PER_IMAGE = 6


def _profile(dims: dict[str, list[int]]) -> str:
    return ",".join(f"{k}:{'x'.join(map(str, v))}" for k, v in dims.items())


def _denoiser_profiles(shape: list[int | None], max_batch: int) -> dict[str, str]:
    """Unconditional denoisers: one pass per call (no guidance batch), sample and timestep."""
    out = {}
    for k, (kind, batch) in enumerate((("min", 1), ("opt", max_batch), ("max", max_batch))):
        dims = [batch] + [DENOISER_FREE_DIM[k] if d is None else d for d in shape]
        out[kind] = _profile({"sample": dims, "timestep": [1]})
    return out


def profile_shapes(manifest: Manifest, max_batch: int) -> dict[str, str]:
    """trt_profile_{min,opt,max}_shapes for the UNet: 'name:AxBxC,...' strings. A guided
    call stacks uncond and cond: batch up to 2 * max_batch."""
    spec = manifest.spec
    if spec.denoiser is not None:
        return _denoiser_profiles(spec.denoiser.sample_shape, max_batch)
    img, f, c = spec.image, spec.vae_scale_factor, spec.latent_channels
    text = spec.text
    added = spec.unet_added_conditions
    sizes = {
        "min": (1, img.min_size),
        "opt": (2, img.default_height),
        "max": (2 * max_batch, img.max_size),
    }
    out = {}
    for kind, (batch, px) in sizes.items():
        dims = {
            "sample": [batch, c, px // f, px // f],
            "timestep": [1],
            "encoder_hidden_states": [batch, text.text_len, text.text_dim],
        }
        if added:
            dims["text_embeds"] = [batch, added.pooled_dim]
            dims["time_ids"] = [batch, added.time_ids_dim]
        out[kind] = _profile(dims)
    return out


def text_encoder_profiles(manifest: Manifest, max_batch: int) -> dict[str, str]:
    """input_ids: one to every distinct text of a max_batch request, at the padded length."""
    length = manifest.spec.text.text_len
    sizes = {"min": 1, "opt": 2, "max": TEXTS_PER_IMAGE * max_batch}
    return {kind: _profile({"input_ids": [n, length]}) for kind, n in sizes.items()}


def vae_decoder_profiles(manifest: Manifest, max_batch: int) -> dict[str, str]:
    spec = manifest.spec
    img, f, c = spec.image, spec.vae_scale_factor, spec.latent_channels
    name = spec.models.vae_decoder.inputs[0]
    sizes = {
        "min": (1, img.min_size),
        "opt": (1, img.default_height),
        "max": (max_batch, img.max_size),
    }
    return {kind: _profile({name: [b, c, px // f, px // f]}) for kind, (b, px) in sizes.items()}


def model_options(manifest: Manifest, max_batch: int) -> dict[str, dict[str, str]]:
    """Per model kind: its explicit profile and precision (the runtime's
    model_provider_options)."""
    spec = manifest.spec
    profiles = {"unet": profile_shapes(manifest, max_batch)}
    if spec.text is not None:
        profiles["text_encoder"] = text_encoder_profiles(manifest, max_batch)
    if spec.models.vae_decoder is not None:
        profiles["vae_decoder"] = vae_decoder_profiles(manifest, max_batch)
    precisions = model_precisions(manifest)
    out = {}
    for kind, p in profiles.items():
        fp16 = all(v == "fp16" for n, v in precisions.items() if model_kind(n) == kind)
        out[kind] = {
            "trt_fp16_enable": "1" if fp16 else "0",
            "trt_profile_min_shapes": p["min"],
            "trt_profile_opt_shapes": p["opt"],
            "trt_profile_max_shapes": p["max"],
        }
    return out


def build_options(out_dir: Path, name: str) -> dict[str, str]:
    """The options that build `name`'s engine and write its context model into `out_dir`."""
    return {
        "trt_engine_cache_enable": "1",
        # Relative: ONNX Runtime puts it under the context model's directory and writes it
        # into ep_cache_context as is.
        "trt_engine_cache_path": CACHE_DIR,
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(out_dir / TIMING_DIR),
        "trt_dump_ep_context_model": "1",
        "trt_ep_context_file_path": str(out_dir / f"{name}_ctx.onnx"),
        "trt_ep_context_embed_mode": "0",
    }


def check_context_model(ctx: Path, root: Path) -> list[str]:
    """Make `ctx`'s EPContext nodes load from anywhere: an ``ep_cache_context`` that is
    absolute but inside the engine dir is rewritten relative to the context model's
    directory. Returns the engine files it names (relative to `root`); raises
    EngineDirError for a context that cannot be made to load (outside the engine dir,
    ``..``, missing file, no EPContext node)."""
    import onnx

    model = onnx.load(str(ctx), load_external_data=False)
    nodes = [n for n in model.graph.node if n.op_type == EP_CONTEXT_OP]
    if not nodes:
        raise EngineDirError(f"{ctx}: no {EP_CONTEXT_OP} node (not a TensorRT context model)")
    base = ctx.parent.resolve()
    engines = []
    changed = False
    for node in nodes:
        attrs = {a.name: a for a in node.attribute}
        if "embed_mode" in attrs and onnx.helper.get_attribute_value(attrs["embed_mode"]) != 0:
            continue  # the engine is inside the model
        attr = attrs.get("ep_cache_context")
        if attr is None:
            raise EngineDirError(
                f"{ctx}: {EP_CONTEXT_OP} node {node.name!r} has no ep_cache_context"
            )
        value = onnx.helper.get_attribute_value(attr).decode()
        path = Path(value)
        if path.is_absolute():
            try:
                value = path.resolve().relative_to(base).as_posix()
            except ValueError:
                raise EngineDirError(
                    f"{ctx}: engine {path} is outside {base}; the context model could not load"
                ) from None
            attr.s = value.encode()
            changed = True
        if ".." in PurePosixPath(value).parts:
            raise EngineDirError(f"{ctx}: ep_cache_context {value!r} leaves {base}")
        engine = base / value
        if not engine.is_file():
            raise EngineDirError(f"{ctx}: engine file {engine} does not exist")
        engines.append(engine.relative_to(root.resolve()).as_posix())
    if changed:
        onnx.save_model(model, str(ctx))
    return engines


def build_tensorrt(
    manifest: Manifest, log: Callable[[str], None] | None = None, max_batch: int = 1
) -> dict[str, Any]:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    from w2sd.gpu_libraries import preload_gpu_libraries
    from w2sd.ort_library import package_ort_library

    # The NVIDIA pip libraries (cuDNN, cuBLAS, TensorRT) for the Python module's providers,
    # as the runtime loads them for the core's (the module does not do it by itself).
    preload_gpu_libraries(package_ort_library())
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise BackendError(
            "backend 'tensorrt' needs ONNX Runtime's TensorRT execution provider "
            "(onnxruntime-gpu with TensorRT libraries) and a CUDA device; this machine's "
            f"ONNX Runtime offers {ort.get_available_providers()}"
        )
    root = manifest.root
    sources = model_sources(manifest)
    manifest.verify(sorted(set(sources.values())), full=True)
    per_kind = model_options(manifest, max_batch)
    # Built next to the final directory and swapped in whole: an earlier build stays
    # until this one is complete (context paths are relative, so the move keeps them).
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{BACKEND}.build-"))
    try:
        (tmp / CACHE_DIR).mkdir()
        previous_timing = root / BACKEND / TIMING_DIR
        if previous_timing.is_dir():  # what an earlier build measured: a faster rebuild
            shutil.copytree(previous_timing, tmp / TIMING_DIR)
        files = {}
        for i, (name, rel) in enumerate(sources.items(), 1):
            log(f"[{i}/{len(sources)}] building TensorRT engine for {name} (this takes minutes)")
            opts = {**per_kind[model_kind(name)], **build_options(tmp, name)}
            session = ort.InferenceSession(
                str(root / rel),
                providers=[("TensorrtExecutionProvider", opts), "CUDAExecutionProvider"],
            )
            if session.get_providers()[0] != "TensorrtExecutionProvider":
                raise BackendError(
                    f"{name}: TensorRT did not load (the session runs on "
                    f"{session.get_providers()}); see ONNX Runtime's messages above"
                )
            del session
            ctx = tmp / f"{name}_ctx.onnx"
            if not ctx.is_file():
                raise BackendError(f"{name}: ONNX Runtime wrote no EP-context model at {ctx}")
            check_context_model(ctx, tmp)
            files[name] = f"{BACKEND}/{ctx.name}"
        replace_dir(tmp, root / BACKEND)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out_dir = root / BACKEND
    entry = {
        "files": files,
        "max_batch": max_batch,
        "provider_options": {},
        "model_provider_options": per_kind,
        "model_precision": model_precisions(manifest),
        "artifacts": {
            k: v
            for k, v in artifacts_under(root, out_dir).items()
            if not k.startswith(f"{BACKEND}/{TIMING_DIR}/")
        },
    }
    manifest.record_build(BACKEND, entry)
    log(f"built backend '{BACKEND}' in {out_dir}")
    return entry
