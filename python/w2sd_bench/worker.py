"""One benchmark configuration in its own process: ``python -m w2sd_bench.worker JSON``.

Prints one JSON object (the measurement) on the last line of stdout. Kinds:
``runtime`` (the C++ runtime; also plain DDIM with T + 2λ steps), ``ort-python``, ``ov-python``,
``diffusers`` (the reference loop), ``diffusers-pipeline`` (diffusers' own pipeline, plain
or compiled: ``peers.py``) and ``peak`` (this machine's fp32 matmul GFLOP/s).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from w2sd.latents import initial_latents


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _peak_rss() -> int:
    """This process's peak resident memory (bytes).

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so
    a worker would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _median_stages(stages: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in stages) for k in stages[0]}


def _measure(
    cfg: dict[str, Any], run: Any, first: list[float] | None = None
) -> tuple[list[float], list[Any]]:
    """Warm up, then time `repeat` calls of run(); returns (seconds, run's results). The
    first call's seconds (a warm-up's, or the first timed one's) go into `first`."""
    for i in range(cfg["warmup"]):
        t0 = time.perf_counter()
        run()
        if i == 0 and first is not None:
            first.append(time.perf_counter() - t0)
    times, results = [], []
    for _ in range(cfg["repeat"]):
        t0 = time.perf_counter()
        results.append(run())
        times.append(time.perf_counter() - t0)
    if first is not None and not first:
        first.append(times[0])
    return times, results


def _sample_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """The sampling arguments every system gets: same latents, steps, λ and guidance."""
    return dict(
        latents=initial_latents(cfg["seed"], tuple(cfg["latent_shape"])),
        num_inference_steps=cfg["steps"],
        reflection_steps=cfg["reflection"],
        strong_guidance=cfg["guidance"]["strong"],
        weak_guidance=cfg["guidance"]["weak"],
        denoiser_guidance=cfg["guidance"]["denoiser"],
    )


def run_runtime(cfg: dict[str, Any]) -> dict[str, Any]:
    from w2sd.runtime import W2SDRuntime

    t0 = time.perf_counter()
    rt = W2SDRuntime(
        cfg["engine"],
        backend=cfg.get("backend", "cpu"),
        threads=cfg.get("threads"),
        unet_shape_sessions=cfg.get("unet_shape_sessions"),
    )
    load_s = time.perf_counter() - t0
    # The SHA-256 checks that load ran (verify_checksums=True, the default), timed again
    # with the files as warm as the load found them: load_s minus this is a load without.
    weights = rt.manifest.backends[rt.backend].artifacts
    t0 = time.perf_counter()
    rt.manifest.verify(sorted(weights), full=True)
    checksum_s = time.perf_counter() - t0
    warm_up_s = None
    if cfg.get("warm_up"):  # as `w2sd serve` does before it takes requests
        t0 = time.perf_counter()
        rt.warm_up()
        warm_up_s = time.perf_counter() - t0
    kw = dict(_sample_kwargs(cfg), output_type="np")

    def one_run() -> dict[str, Any]:
        rt.sample(cfg["prompt"], **kw)
        return rt.last_stats

    first: list[float] = []
    e2e, runs = _measure(cfg, one_run, first)
    if cfg.get("outputs_out"):  # after the timed runs: what this system computed
        np.savez(
            cfg["outputs_out"],
            images=rt.sample(cfg["prompt"], **kw),
            latents=rt.sample(cfg["prompt"], **{**kw, "output_type": "latent"}),
        )
    stages = [
        {"text_encode": s["text_encode_s"], "loop": s["loop_s"], "vae_decode": s["vae_decode_s"]}
        for s in runs
    ]
    unet = [(s["unet_s"], s["unet_calls"], s["loop_s"] - s["unet_s"]) for s in runs]
    result: dict[str, Any] = {
        "e2e_s": _summary(e2e),
        "stages_s": _median_stages(stages),
        "unet_calls": unet[0][1],
        "unet_call_s": statistics.median(u[0] / u[1] for u in unet),
        "loop_overhead_s": statistics.median(u[2] for u in unet),
        "weights_bytes": sum(entry.bytes for entry in weights.values()),
        "load_s": load_s,
        "checksum_s": checksum_s,
        # The first request after the load, against the steady median: what a server's
        # first user waits beyond a steady request (shapes prepared on first use).
        "first_request_s": first[0],
        "first_request_ratio": first[0] / statistics.median(e2e),
    }
    if warm_up_s is not None:
        result["warm_up_s"] = warm_up_s
    # Peak memory of sequential serving; the concurrent run below adds one activation
    # set per request in flight and is reported on its own.
    result["peak_rss_bytes"] = _peak_rss()
    n = cfg.get("concurrency", 1)
    if n > 1:
        # N requests in flight at once, each on its own thread (sample is thread-safe).
        t0 = time.perf_counter()
        threads = [
            threading.Thread(target=rt.sample, args=(cfg["prompt"],), kwargs=kw) for _ in range(n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        result["throughput"] = {
            "concurrency": n,
            "images_per_s": n / wall,
            "sequential_images_per_s": 1 / result["e2e_s"]["median"],
            "peak_rss_bytes": _peak_rss(),
        }
    return result


def run_ort_python(cfg: dict[str, Any]) -> dict[str, Any]:
    """``ort-python``, or ``ov-python`` (the same loop on OpenVINO's Python API)."""
    from .ort_python import OrtPythonW2SD

    if cfg["kind"] == "ov-python":
        from .ov_python import ov_python_loop

        loop = ov_python_loop(cfg["engine"])
    else:
        loop = OrtPythonW2SD(cfg["engine"], backend=cfg.get("backend", "cpu"))
    x = initial_latents(cfg["seed"], tuple(cfg["latent_shape"]))
    args = (cfg["prompt"], x, cfg["steps"], cfg["reflection"], cfg["guidance"])
    e2e, outs = _measure(cfg, lambda: loop.sample(*args))
    out = outs[-1]
    stages = [o["stages_s"] for o in outs]
    if cfg.get("latents_out"):
        np.save(cfg["latents_out"], out["latents"])
    return {
        "e2e_s": _summary(e2e),
        "stages_s": _median_stages(stages),
        "unet_calls": out["unet_calls"],
        "peak_rss_bytes": _peak_rss(),
    }


def run_diffusers(cfg: dict[str, Any]) -> dict[str, Any]:
    """The diffusers reference in fp32, or (``autocast``) in the reduced precision a user
    would pick: torch.autocast bf16 on CPU; on a GPU backend the pipelines run on the GPU,
    loaded in fp16 (``torch_dtype=torch.float16``, as diffusers' own examples do)."""
    import contextlib

    import torch

    from export.lora import LoraSpec
    from w2sd_reference import W2SDReference

    on_gpu = cfg["backend"] in ("cuda", "tensorrt")
    loras = {f"{r}_lora": LoraSpec(**spec) if spec else None for r, spec in cfg["loras"].items()}
    ref = W2SDReference(
        cfg["sources"]["strong"],
        cfg["sources"]["weak"],
        cfg["sources"]["denoiser"],
        **loras,
        device="cuda" if on_gpu else "cpu",
        dtype="float16" if on_gpu and cfg.get("autocast") else "float32",
    )
    kw = _sample_kwargs(cfg)
    precision = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if cfg.get("autocast") and not on_gpu
        else contextlib.nullcontext()
    )

    def one_run() -> Any:
        with precision:
            return ref.sample(cfg["prompt"], **kw)

    e2e, outs = _measure(cfg, one_run)
    out = outs[-1]
    if cfg.get("outputs_out"):
        np.savez(cfg["outputs_out"], images=out.images, latents=out.latents)
    stages = [o.stages_s for o in outs]
    return {
        "e2e_s": _summary(e2e),
        "stages_s": _median_stages(stages),
        "unet_calls": out.unet_calls,
        "peak_rss_bytes": _peak_rss(),
    }


def _bf16_peak(n: int, repeat: int) -> float:
    """bf16 matmul GFLOP/s with torch (oneDNN: AMX/AVX512-BF16 where the CPU has them)."""
    import torch

    a = torch.randn(n, n, dtype=torch.bfloat16)
    torch.matmul(a, a)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.matmul(a, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def run_peak(cfg: dict[str, Any]) -> dict[str, Any]:
    """fp32 matmul GFLOP/s with ONNX Runtime's MatMul (the kernels the runtime uses), and
    bf16 matmul GFLOP/s with torch."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = cfg.get("n", 3072)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "mm",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    feed = {"a": a, "b": a}
    sess.run(None, feed)
    times = []
    for _ in range(cfg.get("repeat", 10)):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return {
        "peak_gflops": 2 * n**3 / min(times) / 1e9,
        # Only where bf16 is in use: on a CPU without bf16 instructions it is emulated and
        # takes minutes.
        "bf16_peak_gflops": _bf16_peak(n, cfg.get("repeat", 10)) if cfg.get("bf16") else None,
        "matmul_n": n,
    }


def run_diffusers_pipeline(cfg: dict[str, Any]) -> dict[str, Any]:
    """diffusers' own pipeline (``diffusers-pipeline``; ``compile``: ``diffusers-compile``)."""
    from .peers import run_pipeline

    return {**run_pipeline(cfg, _measure, _summary), "peak_rss_bytes": _peak_rss()}


KINDS = {
    "runtime": run_runtime,
    "ort-python": run_ort_python,
    "ov-python": run_ort_python,
    "diffusers": run_diffusers,
    "diffusers-pipeline": run_diffusers_pipeline,
    "peak": run_peak,
}


class DeviceMemoryPeak:
    """Peak GPU memory in use while this worker runs, above what was in use when it started
    (NVML's device-wide figure, sampled every 5 ms: the bench runs one worker at a time, and
    NVML's per-process list is empty inside containers). None where NVML is unavailable."""

    def __init__(self, device: int = 0) -> None:
        self.peak: int | None = None
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(device)
            self._used = lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
            self._base = self._used()
        except Exception:  # no NVML, no driver or no device: nothing to report
            return
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak or 0, self._used() - self._base)

    def stop(self) -> int | None:
        if self.peak is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._used() - self._base)
        return self.peak


def main() -> None:
    cfg = json.loads(sys.argv[1])
    gpu = cfg.get("backend") in ("cuda", "tensorrt")
    device_peak = DeviceMemoryPeak() if gpu else None
    result = KINDS[cfg["kind"]](cfg)
    if device_peak is not None:
        result["peak_device_bytes"] = device_peak.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
