"""The shapes world: renderer, rule-based scorer, the shipped trained pair, its training
script, and ``w2sd eval`` with a pluggable scorer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from w2sd.errors import InvalidArgumentError
from w2sd_studies.evaluate import load_scorer, mean_ci
from w2sd_studies.shapes import models_dir, parse_prompt, render, sample_scenes, score_images
from w2sd_studies.shapes.render import Scene


def _rendered(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(rng, n)
    return np.stack([render(s, rng) for s, _ in scenes]), [p for _, p in scenes]


def test_parse_prompt_reads_both_relations() -> None:
    scene = Scene(("red", "circle"), ("blue", "square"))
    assert parse_prompt("a red circle above a blue square") == scene
    assert parse_prompt("A blue square below a red circle") == scene
    assert parse_prompt("a red bicycle") is None
    assert parse_prompt("a purple circle above a blue square") is None


def test_scorer_accepts_the_truth_and_rejects_a_wrong_prompt() -> None:
    images, prompts = _rendered(400)
    truth = score_images(images, prompts)
    assert truth["adherence"].mean() >= 0.98
    swapped = [
        p.replace("above", "#").replace("below", "above").replace("#", "below") for p in prompts
    ]
    assert score_images(images, swapped)["relation"].mean() <= 0.02
    # Any changed colour or shape word makes the prompt false for the image.
    for a, b in (("red", "green"), ("circle", "square")):
        changed = [p.replace(a, "#").replace(b, a).replace("#", b) for p in prompts]
        keep = [x != y for x, y in zip(prompts, changed, strict=True)]
        wrong = score_images(images[keep], [c for c, k in zip(changed, keep, strict=True) if k])
        assert sum(keep) > 100 and wrong["adherence"].mean() <= 0.03


def test_scorer_refuses_a_prompt_it_cannot_judge() -> None:
    images, _ = _rendered(1)
    with pytest.raises(ValueError, match="not a shapes prompt"):
        score_images(images, ["a red bicycle"])


def test_shipped_base_model_is_a_small_diffusers_folder() -> None:
    """The base model (trained by shapes.train; the minority models start from it)."""
    folder = models_dir() / "base"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / sub).is_dir(), sub
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 8 * 2**20


def test_mean_ci_is_the_normal_interval() -> None:
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    mean, half = mean_ci(values)
    assert mean == 0.6
    assert abs(half - 1.959964 * values.std(ddof=1) / np.sqrt(5)) < 1e-12


@pytest.mark.parametrize(
    "spec, words",
    [
        ("nocolon", "module:function"),
        ("w2sd_studies.shapes:missing", "cannot load"),
        ("w2sd_studies.shapes:SHAPES", "not callable"),
    ],
)
def test_load_scorer_errors(spec, words):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match=words):
        load_scorer(spec)


def test_training_script_is_deterministic(tmp_path):  # type: ignore[no-untyped-def]
    """Two short runs with the same seed write byte-identical weights."""
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "w2sd_studies.shapes.train",
                "--out",
                str(out),
                "--images",
                "64",
                "--vae-steps",
                "2",
                "--unet-steps",
                "3",
                "--weak-step",
                "2",
                "--batch",
                "8",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(out)
    for role in ("strong", "weak"):
        for sub in ("unet", "vae", "text_encoder"):
            files = [sorted((o / role / sub).glob("*.safetensors")) for o in outs]
            assert files[0] and [f.read_bytes() for f in files[0]] == [
                f.read_bytes() for f in files[1]
            ]


@pytest.fixture(scope="module")
def shapes_engine(tmp_path_factory):  # type: ignore[no-untyped-def]
    from w2sd_studies.minority_study import minority_engine

    return minority_engine(tmp_path_factory.mktemp("shapes"), "weak", log=lambda m: None)


def test_eval_cli_with_a_custom_scorer(shapes_engine, tmp_path):  # type: ignore[no-untyped-def]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle above a blue square\na green triangle below a yellow circle\n")
    (tmp_path / "my_scorer.py").write_text(
        "import numpy as np\n"
        "def brightness(images, prompts):\n"
        "    return {'brightness': images.reshape(len(images), -1).mean(1) / 255.0}\n"
    )
    out = tmp_path / "eval"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "w2sd_cli",
            "eval",
            str(shapes_engine),
            "--prompts",
            str(prompts),
            "--num-images",
            "6",
            "--batch",
            "4",
            "--steps",
            "6",
            "--reflection-steps",
            "2",
            "--scorer",
            "my_scorer:brightness",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert list(result["metrics"]) == ["brightness"]
    assert result["runs"]["DDIM"] == {
        "num_inference_steps": 10,
        "reflection_steps": 0,
        "unet_calls": 10,
    }
    assert result["runs"]["W2SD"]["unet_calls"] == 10
    b = result["metrics"]["brightness"]
    assert 0.5 < b["DDIM"]["mean"] < 1.0  # light-grey backgrounds
    assert "| brightness |" in proc.stdout
    assert (out / "grid.png").stat().st_size > 1000


def test_eval_default_scorer_scores_generated_images(shapes_engine, tmp_path):  # type: ignore[no-untyped-def]
    from w2sd_studies.evaluate import EvalOptions, evaluate

    prompts = (models_dir().parent / "prompts.txt").read_text().split("\n")
    result = evaluate(
        EvalOptions(
            engine_dir=shapes_engine, prompts=[p for p in prompts if p], num_images=20, batch=10
        ),
        log=lambda m: None,
    )
    m = result["metrics"]
    assert set(m) == {"adherence", "colours", "relation", "shapes"}
    # The trained model draws the named colours (a random model would not).
    assert m["colours"]["DDIM"]["mean"] >= 0.7
