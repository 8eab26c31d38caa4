"""Where one UNet call's time goes on OpenVINO's CPU plugin: per-layer-type totals.

This compiles the engine's exported UNet with OpenVINO's own Python API (the ``openvino``
wheel of the ``[openvino]`` extra, the same runtime the backend calls), with PERF_COUNT on
and the engine's precision, for the bench's shapes as static shapes (as the runtime does),
runs it and sums the counters by layer type:

    python scripts/profile_openvino.py ENGINE_DIR [--precision fp32]
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("engine_dir")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--latent", type=int, default=32, help="latent side (256 px: 32)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="0: OpenVINO's default")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--dynamic", action="store_true", help="dynamic shapes (default: static, as the runtime)"
    )
    args = p.parse_args()

    import openvino as ov

    engine = Path(args.engine_dir)
    manifest = json.loads((engine / "manifest.json").read_text())
    text = manifest["text"]
    core = ov.Core()
    config = {
        "PERF_COUNT": True,
        "INFERENCE_PRECISION_HINT": "bf16" if args.precision == "bf16" else "f32",
    }
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = args.threads
    b, c, s = args.batch, manifest["latent_channels"], args.latent
    rng = np.random.default_rng(0)
    feed = {
        "sample": rng.standard_normal((b, c, s, s), dtype=np.float32),
        "timestep": np.array([501.0], np.float32),
        "encoder_hidden_states": rng.standard_normal(
            (b, text["text_len"], text["text_dim"]), dtype=np.float32
        ),
    }
    added = manifest.get("unet_added_conditions")
    if added:
        feed["text_embeds"] = rng.standard_normal((b, added["pooled_dim"]), dtype=np.float32)
        feed["time_ids"] = np.tile(
            np.array([[s * 8, s * 8, 0, 0, s * 8, s * 8]], np.float32), (b, 1)
        )
    if any(u.get("lora") and u["lora"].get("input") for u in manifest["unets"][:1]):
        feed["lora_scale"] = np.array([1.0], np.float32)
    model = core.read_model(str(engine / manifest["unets"][0]["file"]))
    if not args.dynamic:  # as the runtime compiles it (unet_shape_sessions)
        model.reshape({name: list(value.shape) for name, value in feed.items()})
    t0 = time.perf_counter()
    compiled = core.compile_model(model, "CPU", config)
    compile_s = time.perf_counter() - t0
    request = compiled.create_infer_request()
    request.infer(feed)  # warm-up
    walls = []
    by_type: dict[str, float] = collections.defaultdict(float)
    for _ in range(args.runs):
        t0 = time.perf_counter()
        request.infer(feed)
        walls.append(time.perf_counter() - t0)
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                by_type[info.node_type] += info.real_time.total_seconds() / args.runs
    total = sum(by_type.values())
    wall_ms = np.median(walls) * 1e3
    print(f"compile {compile_s:.1f} s; wall per call {wall_ms:.0f} ms (median of {args.runs})")
    print(f"{'layer type':<24} {'ms':>9} {'share':>7}")
    for kind, sec in sorted(by_type.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{kind:<24} {sec * 1e3:>9.1f} {100 * sec / total:>6.1f}%")
    print(f"{'(sum of counters)':<24} {total * 1e3:>9.1f}")


if __name__ == "__main__":
    main()
