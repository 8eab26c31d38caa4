"""Shared fixtures: the tiny local model pair, its engine dir and a loaded runtime.

Everything is built once per test session from fixed seeds (no download).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from w2sd.spec_bounds import FP32_IMAGE_EQUAL_FRACTION, FP32_IMAGE_MAX_OFF, FP32_LATENT_RTOL

STEPS = 10
REFLECTION = 5


# Measured figures, written to $W2SD_PARITY_REPORT (JSON) at the end of the session.
PARITY_RECORDS: list[dict[str, object]] = []


def _record(kind: str, value: float) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    PARITY_RECORDS.append({"test": test, "kind": kind, "value": value})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("W2SD_PARITY_REPORT")
    if path and PARITY_RECORDS:
        Path(path).write_text(json.dumps(PARITY_RECORDS, indent=1))


def relative_diff(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(actual - reference).max() / np.abs(reference).max())


def assert_latents_close(actual: np.ndarray, reference: np.ndarray) -> float:
    assert actual.shape == reference.shape
    rel = relative_diff(actual, reference)
    _record("latents_rel_diff", rel)
    assert rel <= FP32_LATENT_RTOL, (
        f"latents differ by {rel:.3e} of max|ref| (bound {FP32_LATENT_RTOL})"
    )
    return rel


# What the plain-loop peers (ort-python, ov-python) are checked on: the runtime's latents
# for one prompt, T 10, lambda 5, every role guided 7.5.
PEER_GUIDANCE = {"strong": 7.5, "weak": 7.5, "denoiser": 7.5}


def runtime_peer_latents(runtime, latents: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return runtime.sample(
        "a cat",
        latents=latents,
        num_inference_steps=10,
        reflection_steps=5,
        strong_guidance=7.5,
        weak_guidance=7.5,
        output_type="latent",
    )


def assert_images_match(actual: np.ndarray, reference: np.ndarray) -> float:
    assert actual.shape == reference.shape and actual.dtype == np.uint8
    diff = np.abs(actual.astype(np.int16) - reference.astype(np.int16))
    equal = float((diff == 0).mean())
    _record("image_equal_fraction", equal)
    assert equal >= FP32_IMAGE_EQUAL_FRACTION, f"only {equal:.5f} of uint8 values equal"
    assert int(diff.max()) <= FP32_IMAGE_MAX_OFF, f"a uint8 value is off by {int(diff.max())}"
    return equal


def has_cuda_device() -> bool:
    """nvidia-smi lists a GPU (independent of this build and of ONNX Runtime)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if has_cuda_device():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


FAMILY_BUILDERS = {
    "sd1": lambda root, seed, text: _tiny("sd", root, seed, "sd1", text),
    "sd2": lambda root, seed, text: _tiny("sd", root, seed, "sd2", text),
    "sdxl": lambda root, seed, text: _tiny("sdxl", root, seed, None, text),
}


def _tiny(kind: str, root: Path, seed: int, variant: str | None, text_seed: int | None) -> Path:
    from w2sd_bench.tiny_models import build_tiny_sd_pipeline, build_tiny_sdxl_pipeline

    suffix = "" if text_seed is None else f"-text{text_seed}"
    if kind == "sdxl":
        return build_tiny_sdxl_pipeline(
            root / f"sdxl-{seed}{suffix}", unet_seed=seed, text_seed=text_seed
        )
    return build_tiny_sd_pipeline(
        root / f"{variant}-{seed}{suffix}", unet_seed=seed, variant=variant, text_seed=text_seed
    )


class ModelZoo:
    """Tiny pipelines, LoRAs and engine dirs, each built once per session on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._engines: dict[str, Path] = {}
        self._references: dict[str, object] = {}

    def pipeline(self, family: str, seed: int, text_seed: int | None = None) -> Path:
        """A tiny pipeline; `text_seed` gives it text encoders of its own (a fine-tune that
        ships its own CLIP weights), otherwise they equal every other pipeline's."""
        return FAMILY_BUILDERS[family](self.root / "models", seed, text_seed)

    def lora(self, family: str, fmt: str = "diffusers") -> Path:
        from w2sd_bench.tiny_models import make_tiny_lora

        out = self.root / "loras" / f"{family}-{fmt}.safetensors"
        if not out.exists():
            make_tiny_lora(self.pipeline(family, 1), out, seed=5, fmt=fmt)
        return out

    def engine(self, key: str, **options: object) -> Path:
        """Export + build once per key; options are ExportOptions fields."""
        if key not in self._engines:
            from engines.build import build_engine
            from export.engine_export import ExportOptions, export_engine

            out = self.root / "engines" / key
            export_engine(
                ExportOptions(
                    out=out,
                    num_inference_steps=STEPS,
                    reflection_steps=REFLECTION,
                    log=lambda m: None,
                    **options,
                )
            )  # type: ignore[arg-type]
            build_engine(str(out), "cpu", log=lambda m: None)
            self._engines[key] = out
        return self._engines[key]

    def reference(self, key: str, **options: object):  # type: ignore[no-untyped-def]
        if key not in self._references:
            from w2sd_reference import W2SDReference

            self._references[key] = W2SDReference(**options)  # type: ignore[arg-type]
        return self._references[key]


@pytest.fixture(scope="session", autouse=True)
def verified_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's own record of hashed artifacts (w2sd.verified), not the user's; child
    processes inherit it."""
    path = tmp_path_factory.mktemp("verified") / "verified.json"
    os.environ["W2SD_VERIFIED_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> ModelZoo:
    return ModelZoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def tiny_pair(zoo: ModelZoo) -> tuple[Path, Path]:
    """The demo's pair: tiny SD-1.x strong (UNet seed 1) and weak (UNet seed 2)."""
    return zoo.pipeline("sd1", 1), zoo.pipeline("sd1", 2)


@pytest.fixture(scope="session")
def engine_dir(tiny_pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engines.build import build_engine
    from export.engine_export import ExportOptions, export_engine

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
def reference(zoo: ModelZoo, tiny_pair: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    return zoo.reference("sd1-pair", strong=tiny_pair[0], weak=tiny_pair[1])


@pytest.fixture
def engine_copy(engine_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the engine dir that a test may damage."""
    dst = tmp_path / "engine"
    shutil.copytree(engine_dir, dst)
    return dst
