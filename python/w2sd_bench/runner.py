"""Run the runtime and its baselines side by side, each in its own process, and assemble
the result object (shape documented in the README's benchmark section)."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2sd.backends import require_backend
from w2sd.cpuinfo import bf16_support
from w2sd.errors import InvalidArgumentError, W2SDError
from w2sd.manifest import ROLES, Manifest, load_manifest

from .workloads import WORKLOADS, prepare

# The peers per kind of backend (../shared/PERF-PROTOCOL.md). On a GPU the reference loop
# ("diffusers", fp32) is the precision oracle; diffusers' own fp16 pipeline, plain and with
# torch.compile, are the speed peers.
CPU_BASELINES = ("diffusers", "diffusers-bf16", "ort-python", "ov-python", "ddim")
GPU_BASELINES = ("diffusers", "diffusers-pipeline", "diffusers-compile", "ort-python", "ddim")
# Asked for by name only: the runtime itself with static-shape UNet models (openvino), and
# warmed up after loading (W2SDRuntime.warm_up, as `w2sd serve` does).
OPTIONAL_BASELINES = ("static-shapes", "warm-up")
BASELINES = tuple(dict.fromkeys(CPU_BASELINES + GPU_BASELINES + OPTIONAL_BASELINES))
PIPELINE_PEERS = ("diffusers-pipeline", "diffusers-compile")
# ISA flags that decide what a CPU can do fast (reported with every result).
ISA_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")
PROMPT = "a red bicycle in front of a house, photo"


@dataclass
class BenchOptions:
    engine_dir: Path | None = None
    workload: str | None = None
    steps: int | None = None
    reflection_steps: int | None = None
    repeat: int = 3
    warmup: int = 1
    # None: every baseline this machine can run at a meaningful speed (see default_baselines).
    baselines: tuple[str, ...] | None = None
    concurrency: int = 2
    threads: int | None = None
    backend: str = "cpu"
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


def default_baselines(backend: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """(baselines to run, {baseline left out: why}). diffusers-bf16 is left out on a CPU
    without bf16 instructions, where torch emulates bf16 (a UNet call takes ~40x its fp32
    time): ask for it by name to run it anyway."""
    if backend in ("cuda", "tensorrt"):
        return GPU_BASELINES, {}
    absent = {}
    if backend != "openvino":
        absent["ov-python"] = "OpenVINO's own loop is the peer of backend 'openvino'"
    fast, why = bf16_support()
    if not fast:
        absent["diffusers-bf16"] = why
    return tuple(b for b in CPU_BASELINES if b not in absent), absent


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "w2sd" / "bench"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "logical_cpus": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and "cpu" not in info:
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and "isa_flags" not in info:
                present = set(line.split(":", 1)[1].split())
                info["isa_flags"] = [f for f in ISA_FLAGS if f in present]
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_bytes"] = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    for pkg in ("w2sd-runtime", "onnxruntime", "onnxruntime-gpu", "numpy", "torch", "diffusers"):
        try:
            info[f"{pkg}_version"] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return info


def gpu_info(device: int = 0) -> dict[str, Any] | None:
    """The GPU's name, memory and driver version (NVML), or None where NVML is absent."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device)
        name = pynvml.nvmlDeviceGetName(handle)
        return {
            "name": name.decode() if isinstance(name, bytes) else name,
            "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            "driver": str(pynvml.nvmlSystemGetDriverVersion()),
        }
    except Exception:  # no NVML, driver or device
        return None


def _worker(cfg: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "w2sd_bench.worker", json.dumps(cfg)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise W2SDError(f"benchmark worker '{cfg['kind']}' failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sources_and_loras(m: Manifest) -> tuple[dict[str, str], dict[str, Any]] | None:
    """The diffusers folders (and LoRAs) the engine was exported from, if still present."""
    sources = dict(m.spec.sources)
    if not all(Path(sources.get(r, "")).joinpath("model_index.json").is_file() for r in ROLES):
        return None
    loras = {}
    for r in ROLES:
        lora = m.spec.unets[m.spec.role(r).unet].lora
        loras[r] = None if lora is None else {"path": lora.file, "scale": lora.scale}
        if lora is not None and not Path(lora.file).is_file():
            return None
    return sources, loras


def _loop_gflop(
    m: Manifest,
    engine: Path,
    latent: list[int],
    steps: int,
    reflection: int,
    guidance: dict[str, float],
) -> tuple[float, float]:
    """(GFLOP of one batch-2 UNet call, GFLOP of the whole loop)."""
    from .roofline import unet_macs

    text = m.spec.text
    _, c, h, w = latent

    def call_gflop(batch: int) -> float:
        shapes = {
            "sample": [batch, c, h, w],
            "timestep": [1],
            "encoder_hidden_states": [batch, text.text_len, text.text_dim],
        }
        added = m.spec.unet_added_conditions
        if added:
            shapes.update(
                text_embeds=[batch, added.pooled_dim], time_ids=[batch, added.time_ids_dim]
            )
        return 2 * unet_macs(engine / m.spec.unets[0].file, shapes) / 1e9

    per_batch = {1: call_gflop(1), 2: call_gflop(2)}

    def role_gflop(role: str) -> float:
        return per_batch[1 if guidance[role] == 1.0 else 2]

    total = steps * role_gflop("denoiser") + reflection * (
        role_gflop("strong") + role_gflop("weak")
    )
    return per_batch[2], total


def _baselines(opts: BenchOptions) -> tuple[tuple[str, ...], dict[str, str]]:
    """The baselines to run and those left out with why; refuses unknown names and bad
    options."""
    absent: dict[str, str] = {}
    if opts.baselines is None:
        baselines, absent = default_baselines(opts.backend)
        for b, why in absent.items():
            opts.log(f"bench: leaving out {b} ({why}; --baselines {b} runs it anyway)")
    else:
        baselines = opts.baselines
    for b in baselines:
        if b not in BASELINES:
            raise InvalidArgumentError(
                f"--baselines: unknown {b!r} (known: {', '.join(BASELINES)})"
            )
    if opts.repeat < 1 or opts.warmup < 0:
        raise InvalidArgumentError("--repeat must be >= 1 and --warmup >= 0")
    if (opts.engine_dir is None) == (opts.workload is None):
        raise InvalidArgumentError("give either ENGINE_DIR or --workload, not both or neither")
    return baselines, absent


def _target(opts: BenchOptions) -> tuple[Path, str, int, int, int, int]:
    """(engine dir, name, T, λ, height, width): the named workload (built once) or the
    engine dir's own defaults."""
    if opts.workload is not None:
        if opts.workload not in WORKLOADS:
            raise InvalidArgumentError(
                f"--workload: unknown {opts.workload!r} (known: {', '.join(WORKLOADS)}; the GPU "
                "workloads need a CUDA machine)"
            )
        wl = WORKLOADS[opts.workload]
        engine = prepare(opts.workload, opts.cache_dir, opts.log, backend=opts.backend)
        return engine, wl.name, wl.steps, wl.reflection_steps, wl.height, wl.width
    engine = Path(opts.engine_dir)  # type: ignore[arg-type]
    spec = load_manifest(engine).spec
    steps, reflection = spec.defaults.num_inference_steps, spec.defaults.reflection_steps
    return (
        engine,
        engine.name,
        steps,
        reflection,
        spec.image.default_height,
        spec.image.default_width,
    )


def _systems(
    base: dict[str, Any],
    baselines: tuple[str, ...],
    m: Manifest,
    absent: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Each system's worker configuration: the runtime first, then every baseline that can
    run (one that cannot is added to `absent` with why)."""
    steps, reflection = base["steps"], base["reflection"]
    systems: dict[str, dict[str, Any]] = {"runtime": {**base, "kind": "runtime"}}
    for b in baselines:
        if b == "ddim":
            systems[b] = {
                **base,
                "kind": "runtime",
                "steps": steps + 2 * reflection,
                "reflection": 0,
            }
            continue
        if b in ("ort-python", "ov-python"):
            systems[b] = {**base, "kind": b}
            continue
        if b == "warm-up":
            systems[b] = {**base, "kind": "runtime", "warm_up": True}
            continue
        if b == "static-shapes":
            if base.get("backend") != "openvino":
                absent[b] = "static-shape UNet models are backend 'openvino''s choice"
                log(f"bench: skipping {b} ({absent[b]})")
            else:
                # The default request's guided and unguided batch compiled static.
                systems[b] = {**base, "kind": "runtime", "unet_shape_sessions": 2}
            continue
        found = _sources_and_loras(m)
        if found is None:
            absent[b] = "the engine's source folders are gone"
        elif b in PIPELINE_PEERS and any(found[1].values()):
            absent[b] = "diffusers' pipeline peers run no LoRA"
        elif b in PIPELINE_PEERS:
            systems[b] = {
                **base,
                "kind": "diffusers-pipeline",
                "sources": found[0],
                "compile": b == "diffusers-compile",
                "pipeline_steps": steps + 2 * reflection,
            }
        else:
            systems[b] = {
                **base,
                "kind": "diffusers",
                "sources": found[0],
                "loras": found[1],
                "autocast": b == "diffusers-bf16",
            }
        if b in absent:
            log(f"bench: skipping {b} ({absent[b]})")
    return systems


def _interleaved(
    systems: dict[str, dict[str, Any]], opts: BenchOptions, name: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any] | None]:
    """Interleaved rounds (A B C, A B C, ...): each round runs every system once, in a fresh
    process (its own peak memory) after its warm-up, so machine drift hits all alike. The
    first round also keeps what the runtime and diffusers (fp32) computed from the same
    latents: how far the runtime's precision is from the fp32 reference."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in systems}
    compared = [k for k in ("runtime", "diffusers") if k in systems]
    with tempfile.TemporaryDirectory(prefix="w2sd-bench-") as scratch:
        outputs = {k: str(Path(scratch) / f"{k}.npz") for k in compared}
        for r in range(opts.repeat):
            for key, cfg in systems.items():
                opts.log(f"bench {name}: round {r + 1}/{opts.repeat}: {key}")
                keep = {"outputs_out": outputs[key]} if r == 0 and key in outputs else {}
                runs[key].append(_worker({**cfg, "repeat": 1, "concurrency": 1, **keep}))
        check = precision_check(outputs) if len(compared) == 2 else None
    return runs, check


def _roofline(
    m: Manifest, engine: Path, base: dict[str, Any], rt: dict[str, Any], bf16: bool
) -> dict[str, Any]:
    """The loop's achieved GFLOP/s against this CPU's matmul peak in the precision in use."""
    unet_gflop, loop_gflop = _loop_gflop(
        m, engine, base["latent_shape"], base["steps"], base["reflection"], base["guidance"]
    )
    peak = _worker({"kind": "peak", "bf16": bf16})
    achieved = loop_gflop / (rt["unet_call_s"] * rt["unet_calls"])
    peak_in_use = peak["bf16_peak_gflops"] if bf16 else peak["peak_gflops"]
    return {
        "unet_gflop": unet_gflop,
        "loop_gflop": loop_gflop,
        "achieved_gflops": achieved,
        "peak_gflops": peak_in_use,
        "fp32_peak_gflops": peak["peak_gflops"],
        "bf16_peak_gflops": peak["bf16_peak_gflops"],
        "peak_source": (
            f"torch bf16 matmul {peak['matmul_n']}^3"
            if bf16
            else f"ONNX Runtime fp32 MatMul {peak['matmul_n']}^3"
        ),
        "fraction": achieved / peak_in_use,
    }


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    log = opts.log
    baselines, absent = _baselines(opts)
    # A backend this machine cannot run is an error here, never a silent CPU run.
    require_backend(opts.backend)
    engine, name, steps, reflection, height, width = _target(opts)
    m = load_manifest(engine)
    steps = opts.steps or steps
    reflection = reflection if opts.reflection_steps is None else opts.reflection_steps
    if not 0 <= reflection <= steps - 1:
        raise InvalidArgumentError("--reflection-steps must be in [0, --steps - 1]")
    f = m.spec.vae_scale_factor
    latent = [1, m.spec.latent_channels, height // f, width // f]
    guidance = {r: m.spec.role(r).guidance for r in ROLES}
    base = {
        "engine": str(engine),
        "seed": 0,
        "latent_shape": latent,
        "prompt": PROMPT,
        "steps": steps,
        "reflection": reflection,
        "guidance": guidance,
        "warmup": opts.warmup,
        "repeat": opts.repeat,
        "threads": opts.threads,
        "backend": opts.backend,
    }
    systems = _systems(base, baselines, m, absent, log)
    runs, check = _interleaved(systems, opts, name)
    rt = _aggregate(runs["runtime"])
    if opts.concurrency > 1:
        log(f"bench {name}: runtime, {opts.concurrency} requests in flight")
        concurrent = _worker({**systems["runtime"], "repeat": 1, "concurrency": opts.concurrency})
        rt["throughput"] = concurrent["throughput"]
    result: dict[str, Any] = {
        "workload": name,
        "backend": opts.backend,
        "precision": _precision(m, opts.backend),
        "precision_reason": _precision_reason(m, opts.backend),
        "num_inference_steps": steps,
        "reflection_steps": reflection,
        "height": height,
        "width": width,
        "guidance": guidance,
        "repeat": opts.repeat,
        "warmup": opts.warmup,
        "interleaved_rounds": opts.repeat,
        **rt,
        "machine": machine_info(),
        "baselines": {},
        "baselines_absent": absent,
        "precision_check": check,
    }
    median = rt["e2e_s"]["median"]
    for key in systems:
        if key != "runtime":
            res = _aggregate(runs[key])
            res["speedup"] = res["e2e_s"]["median"] / median
            result["baselines"][key] = res
    if opts.backend in ("cuda", "tensorrt"):
        # The roofline is the CPU's matmul peak: no statement about a GPU.
        result["machine"]["gpu"] = gpu_info()
        return result
    log(f"bench {name}: roofline")
    result["roofline"] = _roofline(m, engine, base, rt, result["precision"] == "bf16")
    return result


def image_psnr_db(a: Any, b: Any) -> float:
    """PSNR of two uint8 images (inf when equal)."""
    import numpy as np

    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def precision_check(outputs: dict[str, str]) -> dict[str, Any]:
    """The runtime's image and final latents against the fp32 diffusers reference's, from
    the same initial latents (W2SD-SPEC: reduced precision is held to image PSNR >= 30 dB,
    the latents' max abs diff reported relative to max|reference|)."""
    import numpy as np

    got, ref = (np.load(outputs[k]) for k in ("runtime", "diffusers"))
    diff = np.abs(got["latents"] - ref["latents"]).max() / np.abs(ref["latents"]).max()
    return {
        "against": "diffusers (fp32)",
        "image_psnr_db": image_psnr_db(got["images"], ref["images"]),
        "latents_max_rel_diff": float(diff),
        "image_equal_fraction": float((got["images"] == ref["images"]).mean()),
    }


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's rounds: median (min, max) end to end, median stages, peak of peaks."""
    e2e = [r["e2e_s"]["median"] for r in runs]
    out = dict(runs[0])
    out["e2e_s"] = {"median": statistics.median(e2e), "min": min(e2e), "max": max(e2e)}
    out["stages_s"] = {
        k: statistics.median(r["stages_s"][k] for r in runs) for k in out["stages_s"]
    }
    out["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
    device = [r["peak_device_bytes"] for r in runs if r.get("peak_device_bytes") is not None]
    if device:
        out["peak_device_bytes"] = max(device)
    medians = ("unet_call_s", "loop_overhead_s", "load_s", "checksum_s", "warm_up_s")
    for key in (*medians, "first_request_s", "first_request_ratio"):
        if key in out:
            out[key] = statistics.median(r[key] for r in runs)
    return out


def _precision_reason(m: Manifest, backend: str) -> str | None:
    """Why the backend computes in that precision (recorded at build time), if known."""
    build = m.backends.get(backend)
    reason = (build.model_extra or {}).get("precision_reason") if build is not None else None
    return None if reason is None else str(reason)


def _precision(m: Manifest, backend: str) -> str:
    """The arithmetic precision the runtime's backend computes in."""
    build = m.backends.get(backend)
    recorded = (build.model_extra or {}).get("precision") if build is not None else None
    return str(recorded or "fp32")
