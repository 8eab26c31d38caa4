"""``w2sd demo --gmm``: what W2SD is for, shown through the runtime (the default demo, the
minority experiment, is w2sd_studies.minority_study).

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
