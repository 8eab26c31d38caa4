"""The minority experiment: layout prompts, the designed data bias, the top-colour measure
with its bootstrap intervals, the fine-tuning script and the demo that runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from w2sd_studies.shapes import models_dir, render
from w2sd_studies.shapes.minority import (
    COLOUR_NAMES,
    GAP_CASES,
    RED_SHARE,
    bootstrap_tv,
    colour_distribution,
    draws,
    layout_prompts,
    score_layouts,
    top_colour_weights,
    tv_to_truth,
)
from w2sd_studies.shapes.render import Scene, parse_layout


def test_layout_prompts_name_shapes_and_no_colour() -> None:
    prompts = layout_prompts()
    assert len(prompts) == 9 and len(set(prompts)) == 9
    assert parse_layout("a circle above a square") == ("circle", "square")
    assert parse_layout("A square below a circle") == ("circle", "square")
    assert parse_layout("a red circle above a blue square") is None
    assert parse_layout("a cat above a square") is None
    scene = Scene(("red", "triangle"), ("blue", "circle"))
    assert scene.prompt(colours=False) == "a triangle above a circle"
    assert parse_layout(scene.prompt("below", colours=False)) == ("triangle", "circle")


def test_every_model_data_set_comes_from_the_same_draws() -> None:
    """Two red shares give the same scenes, shapes and captions' words except where the
    bias moves a layout example's top colour; the drawn shares follow the weights."""
    drawn = draws(np.random.default_rng(3), 20000, 0.5)
    data = {k: [d.caption(v) for d in drawn] for k, v in RED_SHARE.items()}
    for k in RED_SHARE:
        captions = [c for _, c in data[k]]
        assert captions == [c for _, c in data["strong"]]  # layout captions name no colour
        layout = [s for (s, _), d in zip(data[k], drawn, strict=True) if d.layout]
        red = np.mean([s.top[0] == "red" for s in layout])
        assert abs(red - RED_SHARE[k]) < 0.015, (k, red)
        assert all(s.top[0] != s.bottom[0] for s in layout)
    # Specified examples are the same scenes in every data set.
    fixed = [i for i, d in enumerate(drawn) if not d.layout]
    assert all(data["weak"][i] == data["strong"][i] for i in fixed)
    # Where two models' top colours agree, so do the bottom ones (same uniforms).
    pairs = [
        (a, b)
        for (a, _), (b, _), d in zip(data["strong"], data["weak-opposite"], drawn, strict=True)
        if d.layout and a.top == b.top
    ]
    assert pairs and all(a == b for a, b in pairs)
    with pytest.raises(ValueError, match="red_share"):
        top_colour_weights(1.5)


def _layout_images(n: int, red_share: float, seed: int = 0) -> tuple[np.ndarray, list[str], list]:
    rng = np.random.default_rng(seed)
    scenes = [d.caption(red_share)[0] for d in draws(rng, n, 1.0)]
    images = np.stack([render(s, rng) for s in scenes])
    return images, [s.prompt(colours=False) for s in scenes], scenes


def test_score_layouts_reads_the_truth_and_rejects_a_wrong_layout() -> None:
    images, prompts, scenes = _layout_images(300, 0.25)
    got = score_layouts(images, prompts)
    truth = np.array([COLOUR_NAMES.index(s.top[0]) for s in scenes])
    assert (got["top_colour"] == truth).mean() >= 0.99
    assert got["adherence"].mean() >= 0.97
    swapped = [f"a {s.bottom[1]} above a {s.top[1]}" for s in scenes]
    differ = [s.top[1] != s.bottom[1] for s in scenes]
    wrong = score_layouts(images[differ], [p for p, k in zip(swapped, differ, strict=True) if k])
    assert wrong["adherence"].mean() <= 0.03
    blank = np.full_like(images[:1], 235)
    assert score_layouts(blank, prompts[:1])["top_colour"][0] == -1
    with pytest.raises(ValueError, match="not a layout prompt"):
        score_layouts(images[:1], ["a red circle above a blue square"])


def test_tv_to_truth_and_its_paired_bootstrap() -> None:
    assert tv_to_truth(np.array([0, 1, 2, 3] * 10)) == 0.0
    assert tv_to_truth(np.zeros(40, int)) == pytest.approx(0.75)
    # Unfound images (-1) are left out of the distribution.
    assert colour_distribution(np.array([0, 0, -1, 1])).tolist() == pytest.approx(
        [2 / 3, 1 / 3, 0, 0]
    )
    rng = np.random.default_rng(0)
    biased = rng.choice(4, 2000, p=top_colour_weights(0.55))
    fair = rng.choice(4, 2000)
    out = bootstrap_tv({"DDIM": biased, "W2SD": fair}, boots=500)
    assert out["DDIM"]["ci95"][0] < 0.30 < out["DDIM"]["ci95"][1]
    assert out["W2SD"]["mean"] < 0.05
    lo, hi = out["W2SD - DDIM"]["ci95"]
    assert hi < 0 and lo < out["W2SD - DDIM"]["mean"] < hi
    same = bootstrap_tv({"DDIM": biased, "W2SD": biased.copy()}, boots=200)
    assert same["W2SD - DDIM"]["ci95"] == [0.0, 0.0]  # paired: identical runs differ by 0
    with pytest.raises(ValueError, match="same number"):
        bootstrap_tv({"DDIM": biased, "W2SD": fair[:10]})


def test_shipped_minority_models_share_vae_and_tokenizer() -> None:
    """Four small diffusers folders: the strong model and one weak model per gap case,
    fine-tuned from the base model (same VAE and tokenizer), each with its own weights."""
    folders = {name: models_dir() / name for name in ("base", "strong", *GAP_CASES)}
    total, unets = 0, set()
    for folder in folders.values():
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == "StableDiffusionPipeline"
        total += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        unets.add((folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes())
        assert not [c for c in folder.rglob("config.json") if "_name_or_path" in c.read_text()]
        vae = folder / "vae" / "diffusion_pytorch_model.safetensors"
        assert vae.read_bytes() == (folders["strong"] / vae.relative_to(folder)).read_bytes()
    assert len(unets) == 5
    assert total < 40 * 2**20


def _finetune(out, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "w2sd_studies.shapes.finetune", "--init"]
        + [str(models_dir() / "base"), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_finetune_script_is_deterministic(tmp_path):  # type: ignore[no-untyped-def]
    """Two short runs with the same seeds write byte-identical weights; the weak model,
    which continues from the strong one, differs from it."""
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        short = ["--images", "64", "--steps", "2", "--weak-steps", "2", "--batch", "8"]
        proc = _finetune(out, "--models", "strong,weak", *short)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(out)
    assert sorted(p.name for p in outs[0].iterdir()) == ["strong", "weak"]
    weights = {
        (k, role): (o / role / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
        for k, o in enumerate(outs)
        for role in ("strong", "weak")
    }
    assert weights[0, "strong"] == weights[1, "strong"]
    assert weights[0, "weak"] == weights[1, "weak"]
    assert weights[0, "strong"] != weights[0, "weak"]
    # No path of the training machine is written into the saved configs.
    assert not [c for c in outs[0].rglob("config.json") if "_name_or_path" in c.read_text()]


def test_finetune_refuses_unknown_models_and_a_weak_one_without_strong(tmp_path):  # type: ignore[no-untyped-def]
    proc = _finetune(tmp_path, "--models", "strong,weakest", timeout=120)
    assert proc.returncode == 2 and "unknown weakest" in proc.stderr
    proc = _finetune(tmp_path, "--models", "weak", timeout=120)
    assert proc.returncode == 2 and "train strong first" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_demo_offers_every_shipped_weak_model() -> None:
    from w2sd_cli.demo_command import WEAK_MODELS

    assert tuple(GAP_CASES) == WEAK_MODELS


def test_demo_refuses_too_few_images(tmp_path):  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "w2sd_cli", "demo", "--workdir", str(tmp_path), "--num-images", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "--num-images must be at least 2" in proc.stderr
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())


def test_demo_writes_the_headline_and_the_picture(tmp_path):  # type: ignore[no-untyped-def]
    """The default demo on the shipped gap > 0 pair, a few images: results.json has the
    headline block (TV to the truth, lower is better, paired interval) beside the
    adherence table, the top-colour distributions and the run settings; demo.png is the
    histogram above the side-by-side images."""
    from PIL import Image

    from w2sd_studies.minority_study import GUIDANCE, demo_minority

    result = demo_minority(tmp_path, 12, log=lambda m: None)
    saved = json.loads((tmp_path / "minority" / "weak" / "results.json").read_text())
    assert saved == json.loads(json.dumps(result))
    h = saved["headline"]
    assert h["metric"] == "top-colour TV to truth" and h["better"] == "lower"
    assert h["num_images"] == 12
    for k in ("DDIM", "W2SD", "W2SD - DDIM"):
        lo, hi = h[k]["ci95"]
        assert lo <= hi
    assert 0.0 <= h["DDIM"]["mean"] <= 0.75 and 0.0 <= h["W2SD"]["mean"] <= 0.75
    assert set(saved["metrics"]) == {"adherence", "found"}
    assert set(saved["top_colour"]) == {"truth", "DDIM", "W2SD"}
    assert saved["runs"]["DDIM"]["unet_calls"] == saved["runs"]["W2SD"]["unet_calls"] == 49
    assert saved["weak"] == {"model": "weak", "red_share": RED_SHARE["weak"], "case": "gap > 0"}
    assert saved["guidance"] == GUIDANCE
    with Image.open(tmp_path / "demo.png") as picture:
        assert picture.width >= 500 and picture.height >= 240 + 6 * 128
