"""The NVIDIA libraries a GPU build of ONNX Runtime needs, loaded before the core loads
ONNX Runtime's library.

``onnxruntime-gpu``'s provider libraries (``libonnxruntime_providers_cuda.so``,
``..._tensorrt.so``) find cuDNN, cuBLAS, cuFFT, the CUDA runtime and TensorRT by soname.
Installed from pip (``nvidia-*`` packages, ``tensorrt``), those live in
``site-packages/nvidia/.../lib`` and ``site-packages/tensorrt_libs``, which the dynamic
loader does not search. ONNX Runtime's Python module loads them first
(``onnxruntime.preload_dlls``); the core opens the wheel's library by path and never
imports that module, so it does the same here: load each library found by its full path,
after which the provider's lookup by soname finds the loaded copy. Libraries not found
in a package are left to the system's search path (a CUDA toolkit install,
``LD_LIBRARY_PATH``); whether the provider then loads is what ``backend_status`` checks.
"""

from __future__ import annotations

import ctypes
import re
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Keeps every loaded library open for the life of the process.
_LOADED: dict[str, ctypes.CDLL] = {}


@dataclass
class PreloadReport:
    """What ``preload_gpu_libraries`` did: libraries loaded (path), not found in any
    package (name), and those that failed to load (name, error)."""

    gpu_build: bool = False
    cuda_major: int | None = None
    loaded: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.not_found:
            parts.append(f"not in any NVIDIA pip package: {', '.join(self.not_found)}")
        if self.failed:
            parts.append("; ".join(f"{n} failed to load: {e}" for n, e in self.failed))
        return "; ".join(parts)


LAST_REPORT = PreloadReport()
_PRELOADED: dict[Path, PreloadReport] = {}  # by ONNX Runtime library, searched in sys.path


def is_gpu_build(library: Path) -> bool:
    """Whether the ONNX Runtime library at `library` comes with the CUDA provider."""
    return (library.parent / "libonnxruntime_providers_cuda.so").is_file()


def cuda_major_of(capi: Path) -> int | None:
    """The CUDA major version the wheel in `capi` was built with (its
    ``build_and_package_info.py``, read as text: the module is never imported)."""
    info = capi / "build_and_package_info.py"
    if not info.is_file():
        return None
    found = re.search(r"""cuda_version\s*=\s*["'](\d+)""", info.read_text())
    return int(found.group(1)) if found else None


def nvidia_library_paths(cuda_major: int) -> list[tuple[str, ...]]:
    """Paths under site-packages of the libraries the CUDA provider needs, in load order
    (cublasLt before cublas, which needs it), as ONNX Runtime's own preload lists them:
    CUDA 13 ships one ``nvidia/cu13`` package, CUDA 12 one package per component; cuDNN 9
    has its own (its sub-libraries it loads itself)."""
    cufft = "12" if cuda_major >= 13 else "11"
    names = [
        f"libcublasLt.so.{cuda_major}",
        f"libcublas.so.{cuda_major}",
        f"libnvrtc.so.{cuda_major}",
        "libcurand.so.10",
        f"libcufft.so.{cufft}",
        f"libcudart.so.{cuda_major}",
    ]
    if cuda_major >= 13:
        cuda = [("nvidia", f"cu{cuda_major}", "lib", n) for n in names]
    else:
        packages = ("cublas", "cublas", "cuda_nvrtc", "curand", "cufft", "cuda_runtime")
        cuda = [("nvidia", p, "lib", n) for p, n in zip(packages, names, strict=True)]
    return [*cuda, ("nvidia", "cudnn", "lib", "libcudnn.so.9")]


# TensorRT's pip package (tensorrt_libs): the runtime first, then what links against it.
TENSORRT_LIBRARIES = ("libnvinfer.so", "libnvinfer_plugin.so", "libnvonnxparser.so")
# Optional: ONNX Runtime loads the provider without them on some builds.
OPTIONAL = ("libnvrtc.so", "libcurand.so", "libnvinfer_plugin.so", "libnvonnxparser.so")


def _site_dirs() -> list[Path]:
    dirs = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    seen: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_dir() and p not in seen:
            seen.append(p)
    return seen


def find_gpu_libraries(
    cuda_major: int, site_dirs: list[Path] | None = None
) -> list[tuple[str, Path | None]]:
    """(soname, path or None) for every library to preload, in load order: the first
    site directory that has it wins."""
    dirs = _site_dirs() if site_dirs is None else site_dirs
    found: list[tuple[str, Path | None]] = []
    for rel in nvidia_library_paths(cuda_major):
        hit = next((d.joinpath(*rel) for d in dirs if d.joinpath(*rel).is_file()), None)
        found.append((rel[-1], hit))
    for stem in TENSORRT_LIBRARIES:
        hits = [
            p
            for d in dirs
            for p in sorted((d / "tensorrt_libs").glob(f"{stem}.*"))
            if re.fullmatch(re.escape(stem) + r"\.\d+", p.name)
        ]
        found.append((hits[0].name if hits else f"{stem}.*", hits[0] if hits else None))
    return found


def provider_load_error(library: Path, provider: str) -> str | None:
    """Why ONNX Runtime's `provider` ("cuda" or "tensorrt") library beside `library` does
    not load (the dynamic loader's message: which dependency is missing), or None if it
    loads. ONNX Runtime itself only says "Failed to load shared library"."""
    path = library.parent / f"libonnxruntime_providers_{provider}.so"
    if not path.is_file():
        return f"{path.name} is not in {library.parent}"
    try:
        ctypes.CDLL(str(path))
    except OSError as e:
        return str(e)
    return None


def preload_gpu_libraries(library: Path, site_dirs: list[Path] | None = None) -> PreloadReport:
    """Load the NVIDIA libraries that the GPU build of ONNX Runtime at `library` needs,
    from the NVIDIA pip packages; nothing for a CPU or OpenVINO build. Never raises: the
    report says what was missing (``backend_status`` adds it to its reason)."""
    global LAST_REPORT
    if site_dirs is None and _PRELOADED.get(library) is not None:
        LAST_REPORT = _PRELOADED[library]  # backend_status() asks on every runtime load
        return LAST_REPORT
    report = PreloadReport(gpu_build=is_gpu_build(library))
    if report.gpu_build:
        report.cuda_major = cuda_major_of(library.parent) or 12
        for name, path in find_gpu_libraries(report.cuda_major, site_dirs):
            optional = any(name.startswith(o) for o in OPTIONAL)
            if path is None:
                if not optional and not name.startswith(TENSORRT_LIBRARIES):
                    report.not_found.append(name)
                continue
            if str(path) in _LOADED:
                report.loaded.append(str(path))
                continue
            try:
                _LOADED[str(path)] = ctypes.CDLL(str(path))
                report.loaded.append(str(path))
            except OSError as e:
                if not optional:
                    report.failed.append((name, str(e)))
    LAST_REPORT = report
    if site_dirs is None:
        _PRELOADED[library] = report
    return report
