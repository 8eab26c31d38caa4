"""Readable table and a per-stage PNG chart of a benchmark result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STAGES = ("text_encode", "loop", "vae_decode")
COLORS = {"text_encode": (76, 114, 176), "loop": (221, 132, 82), "vae_decode": (85, 168, 104)}


def _rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = [("w2sd runtime", result)]
    rows += [(name, b) for name, b in result.get("baselines", {}).items()]
    return rows


def table(result: dict[str, Any]) -> str:
    r = result
    lines = [
        f"workload {r['workload']} | backend {r['backend']} ({r.get('precision', 'fp32')}) | "
        f"T={r['num_inference_steps']} λ={r['reflection_steps']} | {r['unet_calls']} UNet calls | "
        f"{r['repeat']} interleaved rounds, {r['warmup']} warm-up each",
        f"cpu: {r['machine'].get('cpu', '?')} | isa: {' '.join(r['machine'].get('isa_flags', []))}"
        + (f" | gpu: {r['machine']['gpu']['name']}" if r["machine"].get("gpu") else ""),
        "",
        f"{'system':<18} {'e2e median':>10} {'min':>8} {'max':>8} {'text':>8} {'loop':>8} "
        f"{'vae':>8} {'UNet call':>9} {'peak RSS':>9} {'speedup':>8}",
    ]

    def seconds(value: float | None, width: int) -> str:
        return "-".rjust(width + 1) if value is None else f"{value:>{width}.3f}s"

    for name, row in _rows(r):
        e, st = row["e2e_s"], row["stages_s"]
        speed = "1.00x" if row is r else f"{row['speedup']:.2f}x"
        call = row.get("unet_call_s")
        lines.append(
            f"{name:<18} {e['median']:>9.3f}s {e['min']:>7.3f}s {e['max']:>7.3f}s "
            f"{seconds(st.get('text_encode'), 7)} {seconds(st.get('loop'), 7)} "
            f"{seconds(st.get('vae_decode'), 7)} "
            + ("-".rjust(9) if call is None else f"{call * 1e3:>7.2f}ms")
            + f" {row['peak_rss_bytes'] / 2**30:>6.2f}GiB {speed:>8}"
        )
    device = [(n, row["peak_device_bytes"]) for n, row in _rows(r) if "peak_device_bytes" in row]
    if device:
        lines.append("peak GPU memory: " + ", ".join(f"{n} {b / 2**30:.2f} GiB" for n, b in device))
    if r["backend"] in ("cuda", "tensorrt") and "diffusers-bf16" in r.get("baselines", {}):
        lines.append("diffusers-bf16 on a GPU backend: diffusers on the GPU in fp16")
    for name, why in r.get("baselines_absent", {}).items():
        lines.append(f"{name:<14} not run: {why}")
    if r.get("precision_reason"):
        lines.append(f"runtime precision {r.get('precision')}: {r['precision_reason']}")
    pc = r.get("precision_check")
    if pc:
        lines.append(
            f"runtime vs {pc['against']}, same latents: image PSNR {pc['image_psnr_db']:.2f} dB, "
            f"{100 * pc['image_equal_fraction']:.2f}% of uint8 values equal, final latents max "
            f"abs diff {pc['latents_max_rel_diff']:.2e} of max|reference|"
        )
    lines.append("")
    overhead_pct = 100 * r["loop_overhead_s"] / r["stages_s"]["loop"]
    lines.append(
        f"UNet call {r['unet_call_s'] * 1e3:.1f} ms mean | loop overhead "
        f"{r['loop_overhead_s'] * 1e3:.2f} ms ({overhead_pct:.3f}% "
        f"of the loop) | weights {r['weights_bytes'] / 2**30:.2f} GiB, peak RSS "
        f"{r['peak_rss_bytes'] / r['weights_bytes']:.2f}x weights"
    )
    if "load_s" in r:
        lines.append(
            f"engine load {r['load_s']:.2f} s, of which SHA-256 checks {r['checksum_s']:.2f} s "
            "(verify_checksums=False skips them)"
        )
    for name, row in _rows(r):
        if "first_request_s" in row:
            lines.append(
                f"{name}: first request after load {row['first_request_s']:.2f} s, "
                f"{row['first_request_ratio']:.2f}x the steady median"
                + ("" if row is r else f"; engine load {row['load_s']:.2f} s")
                + (f", then warm_up() {row['warm_up_s']:.2f} s" if "warm_up_s" in row else "")
            )
    rf = r.get("roofline")
    if rf:
        lines.append(
            f"roofline: {rf['unet_gflop']:.1f} GFLOP per batch-2 UNet call, achieved "
            f"{rf['achieved_gflops']:.1f} GFLOP/s of {rf['peak_gflops']:.1f} peak "
            f"({100 * rf['fraction']:.1f}%)"
        )
    tp = r.get("throughput")
    if tp:
        lines.append(
            f"throughput: {tp['images_per_s']:.3f} images/s with {tp['concurrency']} concurrent "
            f"requests ({tp['sequential_images_per_s']:.3f} one at a time)"
        )
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    """Horizontal stacked bars: per-stage seconds for the runtime and each baseline."""
    from PIL import Image, ImageDraw

    rows = _rows(result)
    width, left, bar_h, gap, top = 900, 130, 28, 14, 50
    height = top + len(rows) * (bar_h + gap) + 40
    longest = max(sum(row["stages_s"][s] for s in STAGES) for _, row in rows) or 1.0
    scale = (width - left - 110) / longest
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text(
        (10, 10), f"w2sd bench: {result['workload']} (seconds per image, median)", fill="black"
    )
    for i, (name, row) in enumerate(rows):
        y = top + i * (bar_h + gap)
        draw.text((10, y + 8), name, fill="black")
        x = left
        for s in STAGES:
            w = row["stages_s"][s] * scale
            draw.rectangle([x, y, x + max(w, 1), y + bar_h], fill=COLORS[s])
            x += w
        draw.text((x + 6, y + 8), f"{sum(row['stages_s'][s] for s in STAGES):.3f}s", fill="black")
    y = height - 28
    x = left
    for s in STAGES:
        draw.rectangle([x, y, x + 14, y + 14], fill=COLORS[s])
        draw.text((x + 20, y + 2), s, fill="black")
        x += 130
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
