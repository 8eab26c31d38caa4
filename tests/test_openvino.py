"""Backend `openvino`: ONNX Runtime's OpenVINO EP through the core's C API. fp32 is held to
the spec's fp32 bound; bf16 (CPUs with amx_bf16/avx512_bf16 only) to the reduced-precision
row: image PSNR >= 30 dB vs the fp32 reference, with the latents' max rel diff reported.
Skipped, with the reason, only where the EP cannot load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import _record, assert_images_match, assert_latents_close, relative_diff
from w2sd import InvalidArgumentError, W2SDRuntime, backend_status
from w2sd.latents import initial_latents

MIN_PSNR_DB = 30.0  # spec: reduced precision on CPU


def _status():  # type: ignore[no-untyped-def]
    return {s.name: s for s in backend_status()}["openvino"]


pytestmark = pytest.mark.skipif(
    not _status().available, reason=f"openvino backend unavailable: {_status().reason}"
)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _build(src: Path, dst: Path, precision: str | None) -> Path:
    from w2sd.engines.build import build_engine

    if not dst.exists():
        shutil.copytree(src, dst)
        build_engine(str(dst), "openvino", log=lambda m: None, precision=precision)
    return dst


@pytest.fixture(scope="module")
def fp32_engine(engine_dir, tmp_path_factory):  # type: ignore[no-untyped-def]
    return _build(engine_dir, tmp_path_factory.mktemp("ov") / "fp32", "fp32")


@pytest.mark.parametrize("inversion", ["official", "exact"])
def test_fp32_parity_with_reference(fp32_engine, reference, inversion):  # type: ignore[no-untyped-def]
    rt = W2SDRuntime(fp32_engine, backend="openvino")
    x = initial_latents(4, (1, 4, 8, 8))
    kw = dict(
        num_inference_steps=10,
        reflection_steps=5,
        strong_guidance=7.5,
        weak_guidance=5.0,
        inversion=inversion,
    )
    lat = rt.sample("a red bicycle", latents=x, output_type="latent", **kw)
    img = rt.sample("a red bicycle", latents=x, output_type="np", **kw)
    ref = reference.sample("a red bicycle", latents=x, output_type="np", **kw)
    assert_latents_close(lat, ref.latents)
    assert_images_match(img, ref.images)


def test_build_records_precision_and_cache(fp32_engine):  # type: ignore[no-untyped-def]
    m = json.loads((fp32_engine / "manifest.json").read_text())["backends"]["openvino"]
    assert m["precision"] == "fp32" and m["precision_reason"] == "asked for"
    assert json.loads(m["provider_options"]["load_config"]) == {
        "CPU": {"INFERENCE_PRECISION_HINT": "f32"}
    }
    assert m["files"]["unet0"] == "unet0/model.onnx"  # the exported graph, not ORT's fusions
    assert any((fp32_engine / "openvino" / "cache").iterdir())  # compiled at build time
    # The cache is OpenVINO's to rewrite: it is not checksummed, so changing it is harmless.
    for blob in (fp32_engine / "openvino" / "cache").iterdir():
        blob.write_bytes(b"stale")
    rt = W2SDRuntime(fp32_engine, backend="openvino")
    out = rt.sample(
        "a cat", seed=1, output_type="latent", num_inference_steps=2, reflection_steps=1
    )
    assert out.shape[0] == 1 and np.isfinite(out).all()


def test_default_precision_follows_the_cpu(engine_dir, tmp_path):  # type: ignore[no-untyped-def]
    from w2sd.engines.openvino import BF16_FLAGS, cpu_flags

    has_bf16 = bool(cpu_flags() & set(BF16_FLAGS))
    if not has_bf16:
        with pytest.raises(InvalidArgumentError, match="none of amx_bf16, avx512_bf16") as e:
            _build(engine_dir, tmp_path / "bf16", "bf16")
        assert e.value.param == "precision"
    built = _build(engine_dir, tmp_path / "default", None)
    m = json.loads((built / "manifest.json").read_text())["backends"]["openvino"]
    assert m["precision"] == ("bf16" if has_bf16 else "fp32")


def test_precision_choice_is_pure():  # type: ignore[no-untyped-def]
    from w2sd.engines.openvino import choose_precision

    assert choose_precision(None, {"avx2", "amx_bf16"}) == ("bf16", "this CPU has amx_bf16")
    assert choose_precision(None, {"avx2"})[0] == "fp32"
    assert choose_precision("fp32", {"amx_bf16"}) == ("fp32", "asked for")
    with pytest.raises(InvalidArgumentError):
        choose_precision("fp16", {"amx_bf16"})


def test_bf16_image_psnr(engine_dir, reference, tmp_path):  # type: ignore[no-untyped-def]
    from w2sd.engines.openvino import BF16_FLAGS, cpu_flags

    if not cpu_flags() & set(BF16_FLAGS):
        pytest.skip("this CPU has no bf16 instructions (amx_bf16/avx512_bf16)")
    engine = _build(engine_dir, tmp_path / "bf16", "bf16")
    rt = W2SDRuntime(engine, backend="openvino")
    x = initial_latents(4, (1, 4, 8, 8))
    kw = dict(num_inference_steps=10, reflection_steps=5, strong_guidance=7.5, weak_guidance=5.0)
    lat = rt.sample("a red bicycle", latents=x, output_type="latent", **kw)
    img = rt.sample("a red bicycle", latents=x, output_type="np", **kw)
    ref = reference.sample("a red bicycle", latents=x, output_type="np", **kw)
    _record("bf16_latents_rel_diff", relative_diff(lat, ref.latents))
    psnr = _psnr(img, ref.images)
    _record("bf16_image_psnr_db", psnr)
    assert psnr >= MIN_PSNR_DB


def test_lanes_equal_sequential(fp32_engine):  # type: ignore[no-untyped-def]
    rt = W2SDRuntime(fp32_engine, backend="openvino")
    reqs = [dict(prompt="a cat", seed=s, output_type="latent") for s in range(3)]
    sequential = [rt.sample(**r) for r in reqs]
    for got, want in zip(rt.sample_many(reqs, lanes=2), sequential, strict=True):
        np.testing.assert_array_equal(got, want)
