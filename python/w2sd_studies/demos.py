"""``w2sd demo``: what W2SD is for, shown through the runtime.

``--gmm``: the paper's Gaussian-mixture finding with exact mixture denoisers
(w2sd.gmm_study): figures from the runtime next to the same figures from numpy, and a PNG
of the histograms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from w2sd.errors import ExportVerificationError

# Runtime and numpy figures must agree to the third decimal.
GMM_AGREEMENT = 5e-4


def demo_gmm(work: Path, samples: int, log: Callable[[str], None]) -> dict[str, object]:
    """Run the study, write gmm.png / gmm.json / gmm.md under `work`, print the table."""
    from .gmm_plot import study_picture
    from .gmm_study import TRUE_1D, rows_json, run_study, table

    t0 = time.perf_counter()
    study = run_study(work / "engines", samples=samples, log=log)
    rows = study["rows"]
    worst = max(abs(r.runtime - r.numpy) for r in rows)
    md = table(rows)
    print(md)
    print(
        f"\nruntime vs numpy: max |difference| {worst:.2e} over {len(rows)} figures "
        f"({samples} samples each)"
    )
    png = work / "gmm.png"
    study_picture(study, TRUE_1D.density_1d).save(png)
    (work / "gmm.md").write_text(md + "\n")
    result = {"samples": samples, "max_runtime_numpy_diff": worst, "rows": rows_json(rows)}
    (work / "gmm.json").write_text(json.dumps(result, indent=1) + "\n")
    log(
        f"wrote {png}, {work / 'gmm.md'} and {work / 'gmm.json'} in {time.perf_counter() - t0:.1f}s"
    )
    if worst > GMM_AGREEMENT:
        raise ExportVerificationError(
            f"runtime and numpy figures differ by {worst:.2e} (> {GMM_AGREEMENT}): a runtime bug"
        )
    return result


# The shipped shapes pair's defaults (w2sd.shapes.models_dir()): see the README's
# "Does W2SD help?" section for how they were chosen and every configuration tried.
SHAPES_GUIDANCE = 1.5


def shapes_engine(work: Path, log: Callable[[str], None], gap: str = "weight") -> Path:
    """Export and build (once) an engine from the shipped shapes pair.

    gap "weight": strong = the trained model, weak = its early checkpoint, both guided;
    gap "condition": the trained model alone, weak at guidance 1."""
    from engines.build import build_engine
    from export.engine_export import ExportOptions, export_engine

    from .shapes import models_dir

    engine = work / f"shapes-{gap}-gap"
    if (engine / "cpu").is_dir():
        return engine
    strong = models_dir() / "strong"
    weak = models_dir() / ("weak" if gap == "weight" else "strong")
    export_engine(
        ExportOptions(
            strong=strong,
            weak=weak,
            out=engine,
            strong_guidance=SHAPES_GUIDANCE,
            weak_guidance=SHAPES_GUIDANCE if gap == "weight" else 1.0,
            force=True,
            log=log,
        )
    )
    build_engine(str(engine), "cpu", log=log)
    return engine


def demo_shapes(work: Path, num_images: int, log: Callable[[str], None]) -> dict[str, object]:
    """The shipped trained pair: DDIM vs W2SD, same seeds, scored; writes demo.png (the
    side-by-side grid) and shapes/results.json under `work`, prints the adherence table."""
    import shutil

    from .evaluate import EvalOptions, evaluate, table
    from .shapes import models_dir

    t0 = time.perf_counter()
    engine = shapes_engine(work, log)
    prompts = (models_dir().parent / "prompts.txt").read_text(encoding="utf-8").split("\n")
    result = evaluate(
        EvalOptions(
            engine_dir=engine,
            prompts=[p for p in prompts if p],
            num_images=num_images,
            out_dir=work / "shapes",
        ),
        log=log,
    )
    shutil.copyfile(work / "shapes" / "grid.png", work / "demo.png")
    print(table(result))
    log(
        f"wrote {work / 'demo.png'} (DDIM | W2SD, same seeds) and "
        f"{work / 'shapes' / 'results.json'} in {time.perf_counter() - t0:.1f}s"
    )
    return result
