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

import numpy as np

from .errors import ExportVerificationError

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
    means = np.asarray(TRUE_1D.means)[:, 0]

    def density(xs: np.ndarray) -> np.ndarray:
        s = TRUE_1D.std
        g = np.exp(-((xs[:, None] - means) ** 2) / (2 * s * s)) / (s * np.sqrt(2 * np.pi))
        return (g * np.asarray(TRUE_1D.weights)).sum(1)

    png = work / "gmm.png"
    study_picture(study, density).save(png)
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
