"""What each backend's engine is loaded with, one function per backend: the build's
provider options and the backend's own quirks (OpenVINO's library, properties, cache and
static-shape UNet models, TensorRT's per-model profiles), so that ``runtime`` knows no
backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cpuinfo import bf16_support, cpu_flags
from .errors import BackendError, EngineDirError, InvalidArgumentError
from .manifest import BackendBuild, Manifest
from .openvino_library import require_openvino_c_library
from .ort_library import find_ort_library


@dataclass(frozen=True)
class LoadOptions:
    """The backend-specific fields of the core's EngineConfig."""

    library_path: str = ""  # the runtime library the core loads
    provider_options: dict[str, str] = field(default_factory=dict)
    model_provider_options: dict[str, dict[str, str]] = field(default_factory=dict)
    unet_shape_sessions: int = 0
    warm_unet_shapes: list[tuple[int, dict[str, int]]] = field(default_factory=list)


def _facts(built: BackendBuild) -> dict[str, Any]:
    return built.model_extra or {}


def _build_provider_options(built: BackendBuild) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_facts(built).get("provider_options") or {}).items()}


def _per_model(built: BackendBuild) -> dict[str, dict[str, str]]:
    per_model = _facts(built).get("model_provider_options") or {}
    return {k: {str(a): str(b) for a, b in v.items()} for k, v in per_model.items()}


def _refuse_shape_sessions(unet_shape_sessions: int | None) -> None:
    if unet_shape_sessions is not None:
        raise InvalidArgumentError(
            "unet_shape_sessions: static-shape UNet sessions are for backend 'openvino'",
            param="unet_shape_sessions",
        )


@dataclass(frozen=True)
class LoadChoices:
    """What the caller of W2SDRuntime chose, None for the build's choice."""

    unet_shape_sessions: int | None = None  # openvino only
    cuda_graphs: bool | None = None  # cuda only


def _plain(manifest: Manifest, built: BackendBuild, choices: LoadChoices) -> LoadOptions:
    """cpu: the build's provider options (and per-model ones) as they are."""
    _refuse_shape_sessions(choices.unet_shape_sessions)
    _refuse_cuda_graphs(choices.cuda_graphs, "cpu")
    return LoadOptions(str(find_ort_library()), _build_provider_options(built), _per_model(built))


def _refuse_cuda_graphs(cuda_graphs: bool | None, backend: str) -> None:
    if cuda_graphs is not None:
        raise InvalidArgumentError(
            f"cuda_graphs: CUDA graphs are for backend 'cuda', not {backend!r}",
            param="cuda_graphs",
        )


def _cuda(manifest: Manifest, built: BackendBuild, choices: LoadChoices) -> LoadOptions:
    """cuda: the build's options; UNet sessions capture CUDA graphs where the build says so
    (builds before them do not) unless the caller says otherwise. A session that cannot
    have them launches its kernels (W2SDRuntime.unet_sessions says why)."""
    _refuse_shape_sessions(choices.unet_shape_sessions)
    per_model = _per_model(built)
    graphs = bool(_facts(built).get("cuda_graphs", False))
    if choices.cuda_graphs is not None:
        graphs = choices.cuda_graphs
    unet = {k: v for k, v in per_model.get("unet", {}).items() if k != "enable_cuda_graph"}
    per_model["unet"] = {**unet, "enable_cuda_graph": "1" if graphs else "0"}
    return LoadOptions(str(find_ort_library()), _build_provider_options(built), per_model)


def _openvino_properties(manifest: Manifest, built: BackendBuild) -> dict[str, str]:
    """OpenVINO's properties for every model: the build's precision (bf16 refused on a CPU
    without bf16 instructions) and the compiled-model cache inside the engine dir."""
    precision = str(_facts(built).get("precision", "fp32"))
    if precision == "bf16":
        fast, why = bf16_support(cpu_flags())
        if not fast:
            raise BackendError(
                f"{manifest.root}: its openvino build is bf16, but {why}; rebuild it here "
                f"(`w2sd build {manifest.root} --backend openvino`: fp32 on this CPU)"
            )
    return {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "CACHE_DIR": str(manifest.path("openvino/cache")),
        # Weightless blobs: the weights are read from the build's IR (model.bin), not
        # kept a second time in the cache (docs/openvino.md).
        "CACHE_MODE": "OPTIMIZE_SIZE",
    }


def _openvino(manifest: Manifest, built: BackendBuild, choices: LoadChoices) -> LoadOptions:
    """OpenVINO's C library and properties, and the static-shape UNet models: the build's
    count unless the caller chose one."""
    _refuse_cuda_graphs(choices.cuda_graphs, "openvino")
    shape_sessions = choices.unet_shape_sessions
    library = str(require_openvino_c_library())
    opts = _openvino_properties(manifest, built)
    facts = _facts(built)
    sessions = int(facts.get("unet_shape_sessions", 0))
    if shape_sessions is not None:
        bad = isinstance(shape_sessions, bool) or not isinstance(shape_sessions, int)
        if bad or shape_sessions < 0:
            raise InvalidArgumentError(
                f"unet_shape_sessions must be a non-negative int, got {shape_sessions!r}",
                param="unet_shape_sessions",
            )
        sessions = shape_sessions
    warm = [
        (int(s["unet"]), {k: int(v) for k, v in s.items() if k != "unet"})
        for s in facts.get("warm_unet_shapes", [])
    ]
    return LoadOptions(library, opts, {}, sessions, warm if sessions else [])


def _tensorrt(manifest: Manifest, built: BackendBuild, choices: LoadChoices) -> LoadOptions:
    """The build's per-model profiles and precision, which every TensorRT build must have."""
    _refuse_shape_sessions(choices.unet_shape_sessions)
    _refuse_cuda_graphs(choices.cuda_graphs, "tensorrt")
    if _facts(built).get("model_provider_options") is None:
        raise EngineDirError(
            f"{manifest.root}: its tensorrt build predates per-model profiles and "
            f"relative EP-context paths; run `w2sd build {manifest.root} --backend "
            "tensorrt`"
        )
    return LoadOptions(str(find_ort_library()), _build_provider_options(built), _per_model(built))


_ASSEMBLERS: dict[str, Callable[[Manifest, BackendBuild, LoadChoices], LoadOptions]] = {
    "cpu": _plain,
    "openvino": _openvino,
    "cuda": _cuda,
    "tensorrt": _tensorrt,
}


def load_options(
    backend: str, manifest: Manifest, built: BackendBuild, choices: LoadChoices
) -> LoadOptions:
    """The load options of `backend` for this engine dir's build of it, with the caller's
    choices (each refused by a backend it does not apply to)."""
    return _ASSEMBLERS[backend](manifest, built, choices)
