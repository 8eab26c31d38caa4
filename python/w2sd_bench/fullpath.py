"""The whole path a new user walks, measured step by step, each step in a process of its
own: export (time, peak RSS against the largest component's fp32 bytes), build, load,
and one sample per image size (time, peak RSS against the weights loaded).

``python -m w2sd_bench.fullpath --workload sdxl-arch --gap lora --sizes 512,1024``

Gaps: ``condition`` (one UNet, guidance 7.5 vs 1.0) and ``lora`` (the authors' setting:
one LoRA at +1.5 strong, -1.5 weak, 0.8 denoiser; ``--lora-mode input`` shares one
UNet artifact, ``fused`` writes one per scale). The model is built once and cached;
engine dirs are removed after their gap unless ``--keep`` (an SDXL-size engine dir with
its CPU build takes ~28 GB). Too slow and too big for CI: run by hand, read the JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .runner import default_cache_dir, machine_info
from .workloads import WORKLOADS, build_model

PROMPT = "a red bicycle in front of a house, photo"
LORA_RANK = 32
AUTHORS_SCALES = {"strong": 1.5, "weak": -1.5, "denoiser": 0.8}

# Each step runs as `python -c STEP JSON` and prints one JSON line, its VmHWM included.
_STEP = r"""
import json, sys, time
from pathlib import Path
cfg = json.loads(sys.argv[1])
def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
out = {}
t0 = time.perf_counter()
if cfg["step"] == "export":
    from export.engine_export import ExportOptions, export_engine
    from export.lora import LoraSpec
    loras = {f"{r}_lora": LoraSpec(Path(cfg["lora"]), s) for r, s in cfg["scales"].items()}
    export_engine(ExportOptions(
        strong=Path(cfg["model"]), weak=Path(cfg["model"]), out=Path(cfg["engine"]),
        weak_guidance=cfg["weak_guidance"], num_inference_steps=2, reflection_steps=1,
        lora_mode=cfg["lora_mode"], force=True, **loras))
elif cfg["step"] == "build":
    from engines.build import build_engine
    build_engine(cfg["engine"], "cpu")
else:
    from w2sd import W2SDRuntime
    rt = W2SDRuntime(cfg["engine"], verify_checksums=False, memory_arena=cfg["arena"])
    out["load_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    rt.sample(cfg["prompt"], height=cfg["size"], width=cfg["size"], seed=0,
              num_inference_steps=2, reflection_steps=1, output_type="np")
    out["sample_s"] = time.perf_counter() - t1
    out["stats"] = rt.last_stats
    out["unet_sessions"] = rt.num_unet_sessions
    out["weights_bytes"] = sum(a.bytes for a in rt.manifest.backends["cpu"].artifacts.values())
out["wall_s"] = time.perf_counter() - t0
out["peak_rss_bytes"] = hwm()
print(json.dumps(out))
"""


def _step(cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    """One step in a fresh process; a failure is recorded (killed by a signal: -N) and the
    remaining steps still run."""
    log(f"fullpath: {cfg['step']} {cfg.get('size', '')}".rstrip())
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _STEP, json.dumps(cfg)], stdout=subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        why = "killed by SIGKILL (out of memory?)" if proc.returncode == -9 else "failed"
        log(f"fullpath: step {cfg['step']} {why} (exit {proc.returncode})")
        return {"error": why, "exit": proc.returncode, "wall_s": time.perf_counter() - t0}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(
    workload: str,
    gap: str,
    sizes: list[int],
    cache_dir: Path,
    lora_mode: str = "input",
    keep: bool = False,
    memory_arena: bool = True,
    skip_export: bool = False,
    log: Any = lambda m: print(m, file=sys.stderr, flush=True),
    progress: Any = None,
) -> dict[str, Any]:
    root = cache_dir / workload
    model, _ = build_model(workload, root)
    unet_bytes = _dir_bytes(model / "unet")
    components = {
        sub: _dir_bytes(model / sub)
        for sub in ("unet", "text_encoder", "text_encoder_2", "vae")
        if (model / sub).is_dir()
    }
    scales: dict[str, float] = {}
    lora = root / f"lora-r{LORA_RANK}.safetensors"
    if gap == "lora":
        if not lora.exists():
            from .tiny_models import make_tiny_lora

            log(f"fullpath: writing a random rank-{LORA_RANK} LoRA {lora}")
            make_tiny_lora(model, lora, seed=5, rank=LORA_RANK)
        scales = AUTHORS_SCALES
    engine = root / (f"engine-{gap}" + (f"-{lora_mode}" if gap == "lora" else ""))
    base = {
        "model": str(model),
        "engine": str(engine),
        "lora": str(lora),
        "scales": scales,
        "lora_mode": lora_mode,
        "weak_guidance": 1.0 if gap == "condition" else 7.5,
        "prompt": PROMPT,
        "arena": memory_arena,
    }
    result: dict[str, Any] = {
        "workload": workload,
        "gap": gap,
        "lora_mode": lora_mode if gap == "lora" else None,
        "lora_rank": LORA_RANK if gap == "lora" else None,
        "memory_arena": memory_arena,
        "component_fp32_bytes": components,
        "machine": machine_info(),
    }
    t = time.perf_counter()
    if skip_export:
        export = {"skipped": True}
        result["export"] = export
    else:
        export = _step({**base, "step": "export"}, log)
        result["export"] = export
    if "error" not in export and not skip_export:
        export["largest_component_bytes"] = max(components.values())
        export["peak_over_largest"] = export["peak_rss_bytes"] / max(components.values())
        export["engine_bytes"] = _dir_bytes(engine)
        export["unet_artifacts"] = len(list(engine.glob("unet*/model.onnx")))
        build = _step({**base, "step": "build"}, log)
        result["build"] = build
        if "error" not in build:
            build["cpu_bytes"] = _dir_bytes(engine / "cpu")
    if "error" not in export and "error" not in result.get("build", {}):
        result["samples"] = {}
        for size in sizes:
            s = _step({**base, "step": "sample", "size": size}, log)
            if "error" not in s:
                s["peak_over_weights"] = s["peak_rss_bytes"] / s["weights_bytes"]
            result["samples"][str(size)] = s
            if progress is not None:
                progress(result)
    result["total_s"] = time.perf_counter() - t
    result["unet_fp32_bytes"] = unet_bytes
    if not keep:
        shutil.rmtree(engine, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m w2sd_bench.fullpath",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--workload", default="sdxl-arch", choices=sorted(WORKLOADS))
    p.add_argument("--gap", default="condition", choices=("condition", "lora"))
    p.add_argument("--lora-mode", default="input", choices=("input", "fused"))
    p.add_argument("--sizes", default="512,1024", help="image sizes to sample (default 512,1024)")
    p.add_argument("--cache-dir", default=None, help="default: ~/.cache/w2sd/bench")
    p.add_argument("--keep", action="store_true", help="keep the engine dir afterwards")
    p.add_argument(
        "--no-memory-arena", action="store_true", help="sample with ONNX Runtime's arena off"
    )
    p.add_argument(
        "--skip-export",
        action="store_true",
        help="reuse a kept engine dir (from --keep): measure only the samples",
    )
    p.add_argument("--json", default=None, help="write the result object to this file")
    args = p.parse_args(argv)

    def save(partial: dict[str, Any]) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(partial, indent=2) + "\n")

    result = run(
        args.workload,
        args.gap,
        [int(v) for v in args.sizes.split(",") if v],
        Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        lora_mode=args.lora_mode,
        keep=args.keep,
        memory_arena=not args.no_memory_arena,
        skip_export=args.skip_export,
        progress=save,
    )
    save(result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
