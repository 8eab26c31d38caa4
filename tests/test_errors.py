"""Bad input gives a clear Python exception naming the problem, never a crash."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from w2sd import (
    BackendError,
    EngineDirError,
    InvalidArgumentError,
    W2SDRuntime,
    available_backends,
    backend_status,
)


def test_missing_engine_dir(tmp_path):  # type: ignore[no-untyped-def]
    with pytest.raises(EngineDirError, match="does not exist"):
        W2SDRuntime(tmp_path / "nope")


def test_empty_engine_dir(tmp_path):  # type: ignore[no-untyped-def]
    with pytest.raises(EngineDirError, match="no manifest.json.*empty"):
        W2SDRuntime(tmp_path)


def test_engine_dir_is_a_file(tmp_path):  # type: ignore[no-untyped-def]
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(EngineDirError, match="not a directory"):
        W2SDRuntime(f)


def test_corrupt_manifest_json(engine_copy):  # type: ignore[no-untyped-def]
    (engine_copy / "manifest.json").write_text('{"format": "w2sd-engine", ')
    with pytest.raises(EngineDirError, match="not valid JSON"):
        W2SDRuntime(engine_copy)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda m: m.pop("scheduler"), "missing field 'scheduler'"),
        (lambda m: m.update(version=99), "version 99"),
        (lambda m: m.update(format="other"), "not a w2sd engine manifest"),
        (lambda m: m["roles"]["weak"].update(unet=7), "roles.weak.unet"),
        (lambda m: m["scheduler"].update(alphas_cumprod=[0.5]), "alphas_cumprod"),
        (lambda m: m.update(unets="x"), "field 'unets': Input should be a valid list"),
        (lambda m: m["roles"]["strong"].update(text=3), "roles.strong.text=3"),
        (lambda m: m["text"].pop("encoder_sets"), "missing field 'text.encoder_sets'"),
        (
            lambda m: m["text"]["encoder_sets"][0].update(encoders=[5]),
            r"encoder set \[5\] does not index encoders",
        ),
        (lambda m: m["scheduler"].update(prediction_type="sample"), "scheduler.prediction_type"),
        (lambda m: m["image"].update(min_size="16"), "image.min_size"),
    ],
)
def test_corrupt_manifest_fields(engine_copy, mutate, message):  # type: ignore[no-untyped-def]
    path = engine_copy / "manifest.json"
    m = json.loads(path.read_text())
    mutate(m)
    path.write_text(json.dumps(m))
    with pytest.raises(EngineDirError, match=message):
        W2SDRuntime(engine_copy)


def test_checksum_mismatch(engine_copy):  # type: ignore[no-untyped-def]
    data = engine_copy / "cpu" / "unet1" / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(EngineDirError, match="checksum mismatch.*cpu/unet1/model.onnx.data"):
        W2SDRuntime(engine_copy)


def test_unchanged_files_are_not_hashed_again(engine_copy, monkeypatch):  # type: ignore[no-untyped-def]
    """A file's SHA-256 is checked once per content: a second load hashes nothing, and a
    file written in place since (same size, its mtime put back) is hashed and refused."""
    import w2sd.manifest

    hashed: list[str] = []
    real = w2sd.manifest.sha256_file

    def counting(path):  # type: ignore[no-untyped-def]
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(w2sd.manifest, "sha256_file", counting)
    W2SDRuntime(engine_copy)
    assert any(h.endswith("cpu/unet1/model.onnx.data") for h in hashed)
    hashed.clear()
    W2SDRuntime(engine_copy)
    assert hashed == []
    data = engine_copy / "cpu" / "unet1" / "model.onnx.data"
    before = data.stat()
    with open(data, "r+b") as f:
        f.seek(before.st_size // 2)
        byte = f.read(1)
        f.seek(before.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(EngineDirError, match="checksum mismatch.*cpu/unet1/model.onnx.data"):
        W2SDRuntime(engine_copy)
    assert hashed == [str(data)]


def test_hashing_every_load_when_the_record_is_off(engine_copy, monkeypatch):  # type: ignore[no-untyped-def]
    import w2sd.manifest

    monkeypatch.setenv("W2SD_VERIFIED_CACHE", "")
    calls = []
    real = w2sd.manifest.sha256_file
    monkeypatch.setattr(w2sd.manifest, "sha256_file", lambda p: calls.append(p) or real(p))
    W2SDRuntime(engine_copy)
    first = len(calls)
    W2SDRuntime(engine_copy)
    assert first > 0 and len(calls) == 2 * first


def test_truncated_artifact(engine_copy):  # type: ignore[no-untyped-def]
    data = engine_copy / "cpu" / "unet0" / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(EngineDirError, match="has 100 bytes"):
        W2SDRuntime(engine_copy, verify_checksums=False)


def test_missing_artifact(engine_copy):  # type: ignore[no-untyped-def]
    (engine_copy / "cpu" / "vae_decoder" / "model.onnx").unlink()
    with pytest.raises(EngineDirError, match="'cpu/vae_decoder/model.onnx' is missing"):
        W2SDRuntime(engine_copy)


def test_unbuilt_backend_says_what_to_run(engine_copy):  # type: ignore[no-untyped-def]
    path = engine_copy / "manifest.json"
    m = json.loads(path.read_text())
    m["backends"] = {}
    path.write_text(json.dumps(m))
    with pytest.raises(EngineDirError, match="w2sd build .* --backend cpu"):
        W2SDRuntime(engine_copy)


def test_unknown_backend(engine_dir):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match="unknown backend 'metal'"):
        W2SDRuntime(engine_dir, backend="metal")
    assert "cpu" in available_backends()


def test_unknown_backend_for_build(engine_dir):  # type: ignore[no-untyped-def]
    from engines.build import build_engine

    with pytest.raises(InvalidArgumentError, match="unknown backend 'metal'"):
        build_engine(str(engine_dir), "metal")


def test_missing_ort_library(engine_dir, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """The reason a backend is missing survives: the library that is not there. OpenVINO runs
    on its own library, not ONNX Runtime's."""
    monkeypatch.setenv("W2SD_ORT_LIBRARY", str(tmp_path / "libonnxruntime.so.404"))
    with pytest.raises(BackendError, match="not available.*libonnxruntime.so.404: no such file"):
        W2SDRuntime(engine_dir)
    status = backend_status()
    assert [s.name for s in status] == ["cpu", "openvino", "cuda", "tensorrt"]
    ort_backends = [s for s in status if s.name != "openvino"]
    assert all("libonnxruntime.so.404: no such file" in s.reason for s in ort_backends)
    openvino = status[1]
    assert "libonnxruntime" not in openvino.reason
    assert available_backends() == (["openvino"] if openvino.available else [])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_inference_steps=0), "num_inference_steps must be a positive int"),
        (dict(num_inference_steps=-3), "num_inference_steps must be a positive int"),
        (dict(num_inference_steps=2000), "cannot exceed num_train_timesteps"),
        (
            dict(num_inference_steps=10, reflection_steps=10),
            r"reflection_steps must be in .* = \[0, 9\], got 10",
        ),
        (dict(num_inference_steps=10, reflection_steps=-1), "reflection_steps must be in"),
        (dict(num_inference_steps=10, reflection_steps=[9]), "outside"),
        (dict(num_inference_steps=10, reflection_steps=[1, 1]), "listed twice"),
        (dict(reflection_steps="3"), "int or a list"),
        (dict(inversion="textbook"), "inversion: unknown mode 'textbook'"),
        (dict(height=60), "height=60 must be a multiple of 16"),
        (dict(width=100), "width=100 must be a multiple of 16"),
        (dict(height=4096), r"height=4096 is outside this engine's range \[16, 1024\]"),
        (dict(width=0), "width=0 is outside"),
        (dict(output_type="tensor"), "output_type"),
        (dict(strong_guidance=float("nan")), "strong_guidance must be a finite number"),
        (dict(seed=-1), "seed must be a non-negative int"),
        (dict(seed="7"), "seed must be"),
    ],
)
def test_bad_sample_arguments(runtime, kwargs, message):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match=message):
        runtime.sample("a cat", **kwargs)


@pytest.mark.parametrize(
    "latents,message",
    [
        (np.zeros((1, 4, 8), np.float32), "shape"),
        (np.zeros((1, 3, 8, 8), np.float32), "shape"),
        (np.zeros((2, 4, 8, 8), np.float32), "shape"),
        (np.zeros((1, 4, 8, 8), np.float64), "float32"),
        (np.zeros((1, 4, 8, 8), np.float16), "float32"),
        ([[0.0]], "numpy array"),
        (np.full((1, 4, 8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((1, 4, 7, 8), np.float32), "multiple of 16"),
    ],
)
def test_bad_latents(runtime, latents, message):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match=message):
        runtime.sample("a cat", latents=latents)


def test_bad_prompts(runtime):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match="prompt must be a str"):
        runtime.sample(None)
    with pytest.raises(InvalidArgumentError, match="prompt must not be empty"):
        runtime.sample([])
    with pytest.raises(InvalidArgumentError, match="negative_prompt has 1 entries, prompt has 2"):
        runtime.sample(["a", "b"], ["c"])
