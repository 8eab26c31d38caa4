"""The GPU peers of ``w2sd bench`` (diffusers' own pipeline, plain and compiled), run on the
CPU where they can be: what they run and how they are reported (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from w2sd_bench.runner import CPU_BASELINES, GPU_BASELINES, default_baselines


def test_a_gpu_backend_is_compared_with_the_pipelines_a_gpu_user_runs() -> None:
    on_gpu, absent = default_baselines("cuda")
    assert on_gpu == GPU_BASELINES and not absent
    assert {"diffusers-pipeline", "diffusers-compile"} <= set(on_gpu)
    assert "diffusers-bf16" not in on_gpu  # the reference loop is the oracle, not a peer
    on_cpu, _ = default_baselines("cpu")
    assert not {"diffusers-pipeline", "diffusers-compile"} & set(on_cpu)
    assert set(on_cpu) <= set(CPU_BASELINES)


def test_the_pipeline_peer_makes_the_w2sd_runs_unet_calls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "w2sd_cli",
            "bench",
            "--workload",
            "tiny",
            "--baselines",
            "diffusers-pipeline",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--concurrency",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    peer = result["baselines"]["diffusers-pipeline"]
    steps, reflection = result["num_inference_steps"], result["reflection_steps"]
    # Plain DDIM at T + 2λ steps, guided: one UNet call per step, as the W2SD run makes.
    assert peer["unet_calls"] == steps + 2 * reflection == result["unet_calls"]
    assert peer["compiled"] is False
    assert 0 < peer["unet_call_s"] * peer["unet_calls"] <= peer["e2e_s"]["median"]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("diffusers-pipeline"))
    assert "ms" in row  # its UNet call time is in the table
