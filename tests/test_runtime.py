"""Runtime behaviour: outputs, seeds, progress and cancellation, relocation, thread safety."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from w2sd import CancelledError, W2SDRuntime
from w2sd.latents import initial_latents


def test_output_types(runtime):  # type: ignore[no-untyped-def]
    img = runtime.sample("a cat", seed=1)
    assert isinstance(img, Image.Image) and img.size == (64, 64)
    arr = runtime.sample("a cat", seed=1, output_type="np")
    assert arr.shape == (1, 64, 64, 3) and arr.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(img), arr[0])
    lat = runtime.sample("a cat", seed=1, output_type="latent")
    assert lat.shape == (1, 4, 8, 8) and lat.dtype == np.float32
    imgs = runtime.sample(["a cat", "a dog"], seed=1)
    assert isinstance(imgs, list) and len(imgs) == 2


def test_seed_mapping_is_documented_numpy_pcg64(runtime):  # type: ignore[no-untyped-def]
    by_seed = runtime.sample("a cat", seed=42, output_type="latent")
    x = np.random.Generator(np.random.PCG64(42)).standard_normal((1, 4, 8, 8), dtype=np.float32)
    by_latents = runtime.sample("a cat", latents=x, output_type="latent")
    np.testing.assert_array_equal(by_seed, by_latents)
    assert runtime.last_stats["seed"] is None
    other = runtime.sample("a cat", seed=43, output_type="latent")
    assert np.abs(other - by_seed).max() > 1e-3


def test_larger_image_size(runtime):  # type: ignore[no-untyped-def]
    img = runtime.sample(
        "a cat", seed=0, height=96, width=128, num_inference_steps=3, reflection_steps=1
    )
    assert img.size == (128, 96)


def test_progress_callback_sees_every_step(runtime):  # type: ignore[no-untyped-def]
    seen = []
    runtime.sample(
        "a cat",
        seed=0,
        num_inference_steps=6,
        reflection_steps=2,
        callback=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(i, 6) for i in range(1, 7)]


def test_cancellation(runtime):  # type: ignore[no-untyped-def]
    with pytest.raises(CancelledError, match="after step 2 of 6"):
        runtime.sample(
            "a cat",
            seed=0,
            num_inference_steps=6,
            reflection_steps=2,
            callback=lambda done, total: done < 2,
        )
    # The runtime is still usable afterwards.
    assert runtime.sample(
        "a cat", seed=0, num_inference_steps=2, reflection_steps=1, output_type="latent"
    ).shape == (1, 4, 8, 8)


def test_callback_exception_propagates(runtime):  # type: ignore[no-untyped-def]
    def boom(done: int, total: int) -> bool:
        raise KeyError("from callback")

    with pytest.raises(KeyError, match="from callback"):
        runtime.sample("a cat", seed=0, num_inference_steps=3, reflection_steps=1, callback=boom)


def test_engine_dir_is_relocatable(engine_dir, tmp_path):  # type: ignore[no-untyped-def]
    x = initial_latents(9, (1, 4, 8, 8))
    a = W2SDRuntime(engine_dir).sample("a cat", latents=x, output_type="latent")
    moved = tmp_path / "somewhere" / "else"
    shutil.copytree(engine_dir, moved)
    b = W2SDRuntime(moved).sample("a cat", latents=x, output_type="latent")
    np.testing.assert_array_equal(a, b)


def test_warm_up_runs_every_model_once_and_changes_no_result(engine_dir, runtime):  # type: ignore[no-untyped-def]
    fresh = W2SDRuntime(engine_dir)
    stats = fresh.warm_up()
    img = fresh.manifest.spec.image
    assert stats["unet_calls"] == 4  # T 2, λ 1: 2 + 2·1
    assert stats["text_encode_s"] > 0 and stats["vae_decode_s"] > 0
    # The default request's shapes: what static-shape models and CUDA graphs hold places for.
    assert (stats["height"], stats["width"]) == (img.default_height, img.default_width)
    x = initial_latents(9, (1, 4, 8, 8))
    np.testing.assert_array_equal(
        fresh.sample("a cat", latents=x, output_type="np"),
        runtime.sample("a cat", latents=x, output_type="np"),
    )


def test_concurrent_samples_equal_sequential(runtime):  # type: ignore[no-untyped-def]
    seeds = [1, 2, 3, 4]
    expected = {s: runtime.sample("a cat", seed=s, output_type="latent") for s in seeds}
    results: dict[int, np.ndarray] = {}

    def work(s: int) -> None:
        results[s] = runtime.sample("a cat", seed=s, output_type="latent")

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in seeds:
        np.testing.assert_array_equal(results[s], expected[s])


def test_runtime_path_does_not_import_torch(engine_dir):  # type: ignore[no-untyped-def]
    code = (
        "import sys\n"
        "from w2sd import W2SDRuntime\n"
        f"rt = W2SDRuntime({str(engine_dir)!r})\n"
        "rt.sample('a cat', seed=0, num_inference_steps=2, reflection_steps=1)\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in out.stdout, out.stdout + out.stderr
