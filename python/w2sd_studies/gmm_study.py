"""The paper's Gaussian-mixture finding, measured through the runtime (``w2sd demo --gmm``).

Strong and weak are exact mixture denoisers (w2sd.gmm) whose mode weights are biased:
the strong model under-weights a mode that the true distribution weights fully, and the
weak model under-weights it more (gap > 0: the weak model's bias points the same way as
the strong model's). W2SD should then move mass back toward that mode; with gap = 0
(weak = strong) reflection should change little; with the gap reversed (a weak model less
biased than the strong one) it should move mass the wrong way. Every figure is computed
twice, by the runtime (ONNX models exported and built like any engine) and by the spec's
loop in numpy (w2sd.gmm.numpy_w2sd), and the two must agree to the third decimal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2sd.manifest import SchedulerSpec

from .gmm import SCHEDULER_CONFIG, GaussianMixture, numpy_w2sd, onnx_denoiser

STEPS = 25
MEANS_1D = ((-2.0,), (2.0,))  # mode 0 (x < 0) is the minority mode of the biased models
TRUE_1D = GaussianMixture((0.5, 0.5), MEANS_1D, 0.5)
STRONG_1D = GaussianMixture((0.35, 0.65), MEANS_1D, 0.5)
WEAK_1D = GaussianMixture((0.20, 0.80), MEANS_1D, 0.5)  # the same bias, stronger: gap > 0
REVERSED_1D = GaussianMixture((0.50, 0.50), MEANS_1D, 0.5)  # gap < 0
MEANS_2D = ((-2.0, -2.0), (-2.0, 2.0), (2.0, -2.0), (2.0, 2.0))
TRUE_2D = GaussianMixture((0.25, 0.25, 0.25, 0.25), MEANS_2D, 0.5)
STRONG_2D = GaussianMixture((0.10, 0.20, 0.30, 0.40), MEANS_2D, 0.5)
WEAK_2D = GaussianMixture((0.05, 0.15, 0.30, 0.50), MEANS_2D, 0.5)
GAPS_1D = {"gap > 0": WEAK_1D, "gap = 0": STRONG_1D, "gap < 0": REVERSED_1D}


@dataclass(frozen=True)
class Row:
    case: str  # "1d" or "2d"
    gap: str
    method: str  # "DDIM" or "W2SD"
    steps: int
    reflection: int
    inversion: str
    unet_calls: int
    runtime: float  # the figure: minority-mode mass (1d) or TV distance to the truth (2d)
    numpy: float


def mode_masses(x: np.ndarray, mix: GaussianMixture) -> np.ndarray:
    """Fraction of samples nearest each mode's mean (samples (n, C))."""
    d = ((x[:, None, :] - np.asarray(mix.means)[None]) ** 2).sum(-1)
    return np.bincount(d.argmin(1), minlength=len(mix.means)) / len(x)


def tv_distance(x: np.ndarray, truth: GaussianMixture) -> float:
    """Total variation between the samples' mode masses and the true weights."""
    return 0.5 * float(np.abs(mode_masses(x, truth) - np.asarray(truth.weights)).sum())


def _flat(latents: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B*H*W, C): every position is one draw."""
    return np.moveaxis(latents, 1, -1).reshape(-1, latents.shape[1]).astype(np.float64)


class _Engines:
    """Exports and builds one engine per (strong, weak) pair, under `work`."""

    def __init__(self, work: Path, log: Callable[[str], None]) -> None:
        from export.onnx_denoiser import scheduler_facts

        self.work = work
        self.log = log
        work.mkdir(parents=True, exist_ok=True)
        self.scheduler_path = work / "scheduler_config.json"
        self.scheduler_path.write_text(json.dumps(SCHEDULER_CONFIG, indent=1))
        facts = scheduler_facts(self.scheduler_path)
        self.scheduler = SchedulerSpec.model_validate(facts)

    def runtime(self, name: str, strong: GaussianMixture, weak: GaussianMixture) -> Any:
        import onnx

        from engines.build import build_engine
        from export.onnx_denoiser import OnnxExportOptions, export_onnx_engine
        from w2sd.runtime import W2SDRuntime

        out = self.work / name
        if not (out / "cpu").is_dir():
            paths = []
            for role, mix in (("strong", strong), ("weak", weak)):
                path = self.work / f"{name}-{role}.onnx"
                onnx.save(onnx_denoiser(mix, self.scheduler.alphas_cumprod), str(path))
                paths.append(path)
            export_onnx_engine(
                OnnxExportOptions(
                    strong=paths[0],
                    weak=paths[1],
                    out=out,
                    scheduler_config=self.scheduler_path,
                    num_inference_steps=STEPS,
                    force=True,
                    log=lambda m: None,
                )
            )
            build_engine(str(out), "cpu", log=lambda m: None)
        return W2SDRuntime(out)


def _runs() -> list[tuple[str, int, int, str]]:
    """(method, steps, reflection, inversion): DDIM at T and at the W2SD runs' UNet-call
    budgets (T + 2 lambda), then W2SD at lambda = 12 and 24 in both inversion modes."""
    runs = [("DDIM", STEPS, 0, "official")]
    runs += [("DDIM", STEPS + 2 * lam, 0, "official") for lam in (12, 24)]
    runs += [("W2SD", STEPS, lam, inv) for lam in (12, 24) for inv in ("official", "exact")]
    return runs


def run_study(
    work: Path, samples: int = 20000, seed: int = 0, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every figure of the study, by the runtime and by numpy, plus the samples to plot."""
    engines = _Engines(work, log)
    sched = engines.scheduler
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((samples, 1, 1, 1)).astype(np.float32)
    x2 = rng.standard_normal((samples, 2, 1, 1)).astype(np.float32)
    rows: list[Row] = []
    plots: dict[str, np.ndarray] = {}

    def measure(case, gap, rt, strong, weak, x, figure, run) -> None:  # type: ignore[no-untyped-def]
        method, steps, lam, inv = run
        got = rt.sample(
            latents=x,
            output_type="latent",
            num_inference_steps=steps,
            reflection_steps=lam,
            inversion=inv,
        )
        ref = numpy_w2sd(sched, strong, weak, strong, x, steps, lam, inv)
        rows.append(
            Row(case, gap, method, steps, lam, inv, steps + 2 * lam, figure(got), figure(ref))
        )
        plots[f"{case}|{gap}|{method}|{steps}|{lam}|{inv}"] = _flat(got)

    def minority(x: np.ndarray) -> float:
        return float(mode_masses(_flat(x), TRUE_1D)[0])

    for gap, weak in GAPS_1D.items():
        log(f"gmm: 1-D mixture, {gap}")
        rt = engines.runtime(f"gmm1d-{gap[4:].strip().replace(' ', '')}", STRONG_1D, weak)
        for run in _runs():
            if run[0] == "DDIM" and gap != "gap > 0":
                continue  # DDIM uses the strong model only: the same in every gap
            measure("1d", gap, rt, STRONG_1D, weak, x1, minority, run)
    log("gmm: 2-D mixture, gap > 0")
    rt = engines.runtime("gmm2d", STRONG_2D, WEAK_2D)
    for run in _runs():
        measure(
            "2d",
            "gap > 0",
            rt,
            STRONG_2D,
            WEAK_2D,
            x2,
            lambda x: tv_distance(_flat(x), TRUE_2D),
            run,
        )
    truth = {
        "1d": TRUE_1D.draw(np.random.default_rng(seed + 1), samples),
        "2d": TRUE_2D.draw(np.random.default_rng(seed + 2), samples),
    }
    return {"rows": rows, "plots": plots, "truth": truth, "samples": samples}


def table(rows: list[Row]) -> str:
    """The study as a markdown table."""
    lines = [
        "| case | gap | method | steps T | λ | inversion | UNet calls | runtime | numpy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        what = "minority mass" if r.case == "1d" else "TV to truth"
        lines.append(
            f"| {r.case} ({what}) | {r.gap} | {r.method} | {r.steps} | {r.reflection} | "
            f"{r.inversion if r.reflection else '-'} | {r.unet_calls} | {r.runtime:.4f} | "
            f"{r.numpy:.4f} |"
        )
    return "\n".join(lines)


def rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
