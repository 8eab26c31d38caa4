"""The `w2sd` command line: help for every verb, export -> build -> sample, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

VERBS = ["export", "build", "sample", "demo", "info"]


def w2sd(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "w2sd_cli", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"w2sd {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def test_top_level_help_lists_verbs() -> None:
    out = w2sd("--help").stdout
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(verb: str) -> None:
    out = w2sd(verb, "--help").stdout
    assert out.startswith(f"usage: w2sd {verb}")
    assert "--help" in out


def test_export_build_sample_info(tiny_pair, tmp_path):  # type: ignore[no-untyped-def]
    strong, weak = tiny_pair
    engine = tmp_path / "my-pair"
    exp = w2sd(
        "export",
        "--strong",
        str(strong),
        "--weak",
        str(weak),
        "--out",
        str(engine),
        "--steps",
        "6",
        "--reflection-steps",
        "2",
        "--weak-guidance",
        "3",
    )
    # Each model is checked against its PyTorch module right after it is written.
    checked = [line.split(":")[0].strip() for line in exp.stderr.splitlines() if "max|onnx" in line]
    assert checked == ["text_encoder0", "vae_decoder", "unet0", "unet1"]
    w2sd("build", str(engine), "--backend", "cpu")
    out_png = tmp_path / "out.png"
    run = w2sd(
        "sample",
        str(engine),
        "a red bicycle",
        "--seed",
        "7",
        "-o",
        str(out_png),
        "--reflection-steps",
        "0,2",
    )
    assert "6/6 steps" in run.stderr and "10 UNet calls" in run.stderr  # 6 + 2 x 2
    with Image.open(out_png) as im:
        assert im.size == (64, 64)
    info = w2sd("info", str(engine)).stdout
    assert '"built_backends": [\n  "cpu"\n ]' in info


def test_sample_error_is_one_clear_line(engine_dir, tmp_path):  # type: ignore[no-untyped-def]
    proc = w2sd(
        "sample",
        str(engine_dir),
        "a cat",
        "--steps",
        "10",
        "--reflection-steps",
        "10",
        "-o",
        str(tmp_path / "x.png"),
        check=False,
    )
    assert proc.returncode == 2
    assert "error: reflection_steps must be in" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_bad_reflection_argument_is_a_usage_error(engine_dir):  # type: ignore[no-untyped-def]
    proc = w2sd("sample", str(engine_dir), "a cat", "--reflection-steps", "a,b", check=False)
    assert proc.returncode == 2 and "comma-separated list of ints" in proc.stderr


def test_info_backends_says_why(engine_dir):  # type: ignore[no-untyped-def]
    """`w2sd info --backends` lists every backend with why it is (not) available, as this
    process sees them (OpenVINO too: it no longer depends on which ONNX Runtime is loaded)."""
    from w2sd import backend_status

    lines = w2sd("info", "--backends").stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["cpu", "openvino", "cuda", "tensorrt"]
    for status, line in zip(backend_status(), lines, strict=True):
        if status.available:
            assert line.endswith("available")
        else:
            assert f"not available: {status.reason}" in line
    out = w2sd("info", str(engine_dir)).stdout
    assert '"built_backends"' in out


def test_bench_refuses_a_backend_it_cannot_run(tmp_path):  # type: ignore[no-untyped-def]
    """--backend is passed through: an unavailable one is a clear error, not a CPU run."""
    from w2sd import available_backends

    missing = [b for b in ("cuda", "tensorrt") if b not in available_backends()]
    if not missing:
        pytest.skip("every backend is available here")
    proc = w2sd(
        "bench",
        "--workload",
        "tiny",
        "--backend",
        missing[0],
        "--cache-dir",
        str(tmp_path),
        check=False,
    )
    assert proc.returncode == 2
    assert f"backend '{missing[0]}' is not available on this machine" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing was built or run
