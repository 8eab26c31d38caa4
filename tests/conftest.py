"""Shared fixtures: the tiny local model pair, its engine dir and a loaded runtime.

Everything is built once per test session from fixed seeds (no download).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

# Spec bounds (../shared/W2SD-SPEC.md, "Parity contract"), fp32 on CPU.
LATENT_RTOL = 1e-4  # max abs diff <= 1e-4 * max abs(reference latents)
IMAGE_EQUAL_FRACTION = 0.999  # >= 99.9% of uint8 values equal
IMAGE_MAX_OFF = 1  # none off by more than 1

STEPS = 10
REFLECTION = 5


def relative_diff(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(actual - reference).max() / np.abs(reference).max())


def assert_latents_close(actual: np.ndarray, reference: np.ndarray) -> float:
    assert actual.shape == reference.shape
    rel = relative_diff(actual, reference)
    assert rel <= LATENT_RTOL, f"latents differ by {rel:.3e} of max|ref| (bound {LATENT_RTOL})"
    return rel


def assert_images_match(actual: np.ndarray, reference: np.ndarray) -> float:
    assert actual.shape == reference.shape and actual.dtype == np.uint8
    diff = np.abs(actual.astype(np.int16) - reference.astype(np.int16))
    equal = float((diff == 0).mean())
    assert equal >= IMAGE_EQUAL_FRACTION, f"only {equal:.5f} of uint8 values equal"
    assert int(diff.max()) <= IMAGE_MAX_OFF, f"a uint8 value is off by {int(diff.max())}"
    return equal


def _has_cuda_device() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_cuda_device():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from w2sd.tiny_models import build_tiny_pair

    return build_tiny_pair(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def engine_dir(tiny_pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from w2sd.engines.build import build_engine
    from w2sd.export.engine_export import ExportOptions, export_engine

    strong, weak = tiny_pair
    out = tmp_path_factory.mktemp("engines") / "tiny"
    export_engine(
        ExportOptions(
            strong=strong,
            weak=weak,
            out=out,
            num_inference_steps=STEPS,
            reflection_steps=REFLECTION,
            log=lambda m: None,
        )
    )
    build_engine(str(out), "cpu", log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def runtime(engine_dir: Path):  # type: ignore[no-untyped-def]
    from w2sd import W2SDRuntime

    return W2SDRuntime(engine_dir)


@pytest.fixture(scope="session")
def reference(tiny_pair: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    from w2sd.reference import W2SDReference

    return W2SDReference(*tiny_pair)


@pytest.fixture
def engine_copy(engine_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the engine dir that a test may damage."""
    dst = tmp_path / "engine"
    shutil.copytree(engine_dir, dst)
    return dst
