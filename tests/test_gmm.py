"""The paper's Gaussian-mixture finding through the runtime (``w2sd demo --gmm``): figures
agree with the spec's loop in numpy to the third decimal; a gap in the strong model's
direction helps, no gap changes little, a reversed gap hurts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from w2sd_studies.gmm import GaussianMixture
from w2sd_studies.gmm_study import mode_masses, tv_distance

SAMPLES = 4000


@pytest.fixture(scope="module")
def study(tmp_path_factory):  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("gmm")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "w2sd_cli",
            "demo",
            "--gmm",
            "--workdir",
            str(work),
            "--samples",
            str(SAMPLES),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| 1d (minority mass) | gap > 0 | W2SD | 25 | 12 | official | 49 |" in proc.stdout
    result = json.loads((work / "gmm" / "gmm.json").read_text())
    with Image.open(work / "gmm" / "gmm.png") as png:
        assert png.width > 600 and png.height > 400
    return result


def _rows(study, **match):  # type: ignore[no-untyped-def]
    rows = [r for r in study["rows"] if all(r[k] == v for k, v in match.items())]
    assert rows, match
    return rows


def test_runtime_matches_numpy_to_the_third_decimal(study):  # type: ignore[no-untyped-def]
    assert study["samples"] == SAMPLES
    assert len(study["rows"]) == 7 + 4 + 4 + 7
    for r in study["rows"]:
        assert abs(r["runtime"] - r["numpy"]) < 5e-4, r


def test_gap_in_the_strong_models_direction_helps(study):  # type: ignore[no-untyped-def]
    ddim = [abs(r["runtime"] - 0.5) for r in _rows(study, case="1d", method="DDIM")]
    for r in _rows(study, case="1d", gap="gap > 0", method="W2SD"):
        # Closer to the true 0.5 than DDIM at any step count, time-matched ones included.
        assert abs(r["runtime"] - 0.5) < min(ddim) - 0.05, r
    ddim_tv = min(r["runtime"] for r in _rows(study, case="2d", method="DDIM"))
    for r in _rows(study, case="2d", method="W2SD"):
        assert r["runtime"] < ddim_tv - 0.03, r


def test_no_gap_changes_little_and_a_reversed_gap_hurts(study):  # type: ignore[no-untyped-def]
    base = _rows(study, case="1d", method="DDIM", steps=25)[0]["runtime"]
    for r in _rows(study, case="1d", gap="gap = 0"):
        assert abs(r["runtime"] - base) < 0.02, r
    for r in _rows(study, case="1d", gap="gap < 0"):
        assert r["runtime"] < base - 0.05, r


def test_figures_are_computed_not_assumed() -> None:
    mix = GaussianMixture((0.25, 0.75), ((-2.0,), (2.0,)), 0.5)
    x = mix.draw(np.random.default_rng(0), 20000)
    masses = mode_masses(x, mix)
    assert abs(masses[0] - 0.25) < 0.01 and abs(masses.sum() - 1) < 1e-12
    assert abs(tv_distance(x, GaussianMixture((0.5, 0.5), mix.means, 0.5)) - 0.25) < 0.01
