"""Checkpoints as users store them (../shared/W2SD-SPEC.md, "Checkpoints as stored"): fp16,
bf16 and variant-only diffusers folders and single files export, build and sample, with
final latents equal to those of the same weights stored in fp32 (the spec's fp32 bound).
The oracle is the reference (diffusers) on the same weights stored in fp32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from checkpoint_forms import FORMS, base_pipeline, rounded_fp32, save_pipeline, stored_form

from conftest import STEPS, ModelZoo, _record, relative_diff
from w2sd import W2SDRuntime
from w2sd.latents import initial_latents
from w2sd.spec_bounds import FP32_LATENT_RTOL

PROMPT = "a photo of a cat riding a horse"


KW = dict(num_inference_steps=STEPS, reflection_steps=5, strong_guidance=7.5, weak_guidance=1.0)


def _latents(zoo: ModelZoo, engine: Path, reference_key: str, **folders: Path) -> tuple:  # type: ignore[type-arg]
    """(runtime, reference) final latents from the same initial latents; the reference
    (diffusers, fp32) runs on `folders`."""
    x = initial_latents(4, (1, 4, 8, 8))
    got = W2SDRuntime(engine).sample(PROMPT, latents=x, output_type="latent", **KW)
    ref = zoo.reference(reference_key, **folders).sample(
        PROMPT, latents=x, output_type="latent", **KW
    )
    return got, ref.latents


def fp32_copy(zoo: ModelZoo, family: str, seed: int, through: str) -> Path:
    """The pipeline's weights rounded through `through` and stored in fp32."""
    out = zoo.root / "forms" / family / f"fp32-through-{through}-{seed}"
    if not out.exists():
        rounded_fp32(base_pipeline(zoo, family, seed), out, through)
    return out


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_stored_form_matches_the_same_weights_in_fp32(zoo, family, form):  # type: ignore[no-untyped-def]
    """Strong = weak = the stored form (a guidance gap); the oracle: the reference on the
    same weights stored in fp32."""
    through, stored = FORMS[form]
    path, extra = stored_form(zoo, family, form)
    engine = zoo.engine(f"{family}-form-{form}", strong=path, weak=path, **extra)
    m = json.loads((engine / "manifest.json").read_text())
    assert {k: m["stored"]["strong"][k] for k in stored} == stored
    fp32 = fp32_copy(zoo, family, 1, through)
    got, want = _latents(zoo, engine, f"{family}-fp32-through-{through}", strong=fp32, weak=fp32)
    rel = relative_diff(got, want)
    _record(f"stored_{family}_{form}_vs_fp32", rel)
    assert rel <= FP32_LATENT_RTOL, f"{form}: {rel:.3e} of max|ref| (bound {FP32_LATENT_RTOL})"
    # The comparison tells weights apart: the unrounded weights are outside the bound.
    original = base_pipeline(zoo, family, 1)
    unrounded = zoo.reference(f"{family}-original", strong=original, weak=original)
    far = unrounded.sample(
        PROMPT, latents=initial_latents(4, (1, 4, 8, 8)), output_type="latent", **KW
    ).latents
    assert relative_diff(got, far) > FP32_LATENT_RTOL


def test_roles_stored_differently(zoo):  # type: ignore[no-untyped-def]
    """An fp16 fine-tune against an fp32 base: each role loads its own way."""
    strong, _ = stored_form(zoo, "sd1", "fp16")
    weak = base_pipeline(zoo, "sd1", 2)
    engine = zoo.engine("sd1-fp16-vs-fp32", strong=strong, weak=weak)
    m = json.loads((engine / "manifest.json").read_text())
    assert (m["stored"]["strong"]["dtype"], m["stored"]["weak"]["dtype"]) == ("float16", "float32")
    assert len(m["unets"]) == 2 and len(m["text"]["encoders"]) == 2
    x = initial_latents(4, (1, 4, 8, 8))
    kw = dict(KW, weak_guidance=7.5)
    got = W2SDRuntime(engine).sample(PROMPT, latents=x, output_type="latent", **kw)
    fp32 = fp32_copy(zoo, "sd1", 1, "float16")
    want = zoo.reference("sd1-fp16-vs-fp32", strong=fp32, weak=weak).sample(
        PROMPT, latents=x, output_type="latent", **kw
    )
    rel = relative_diff(got, want.latents)
    _record("stored_sd1_fp16_strong_fp32_weak_vs_fp32", rel)
    assert rel <= FP32_LATENT_RTOL


def _state(module) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "layout", [dict(safetensors=False), dict(shard="20KB"), dict(safetensors=False, shard="20KB")]
)
def test_bin_and_sharded_folders_load_the_same_fp32_weights(zoo, tmp_path, layout):  # type: ignore[no-untyped-def]
    """.bin and sharded files (either kind) give the weights the plain folder gives."""
    from export.checkpoints import open_checkpoint
    from export.families import SD

    base = zoo.pipeline("sd1", 1)
    saved = save_pipeline(base, tmp_path / "saved", "float32", **layout)
    suffix = ".safetensors" if layout.get("safetensors", True) else ".bin"
    unet_files = sorted(p.name for p in (saved / "unet").iterdir() if p.suffix == suffix)
    assert len(unet_files) > 1 if "shard" in layout else len(unet_files) == 1
    ours, theirs = (open_checkpoint("strong", p, None, None, None) for p in (saved, base))
    assert ours.check(("unet", "vae", "text_encoder")) == "float32"
    for load in ("load_unet", "load_vae"):
        a, b = _state(getattr(ours, load)()), _state(getattr(theirs, load)())
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), load
    a = _state(ours.load_text_encoder(SD.encoders[0]))
    b = _state(theirs.load_text_encoder(SD.encoders[0]))
    assert all(np.array_equal(a[k], b[k]) for k in b)


def test_variant_choice(zoo, tmp_path):  # type: ignore[no-untyped-def]
    """Plain files by default, --variant where a folder has it, the only variant of a
    variant-only folder, and a clear refusal when several variants leave it open."""
    from export.checkpoints import open_checkpoint
    from w2sd.errors import ExportError

    base = zoo.pipeline("sd1", 1)
    both = save_pipeline(base, tmp_path / "both", "float32")
    save_pipeline(base, tmp_path / "fp16", "float16", variant="fp16")
    for sub in ("unet", "vae", "text_encoder"):
        for f in (tmp_path / "fp16" / sub).glob("*.fp16.*"):
            f.rename(both / sub / f.name)
    assert open_checkpoint("weak", both, None, None, None).check(("unet",)) == "float32"
    assert open_checkpoint("weak", both, None, "fp16", None).check(("unet",)) == "float16"
    assert open_checkpoint("weak", both, None, "ema", None).variant_of("unet") is None
    for f in (both / "unet").glob("diffusion_pytorch_model.safetensors"):
        f.unlink()
    ck = open_checkpoint("weak", both, None, None, None)
    assert ck.variant_of("unet") == "fp16"
    (both / "unet" / "diffusion_pytorch_model.ema.safetensors").write_bytes(
        (both / "unet" / "diffusion_pytorch_model.fp16.safetensors").read_bytes()
    )
    with pytest.raises(
        ExportError, match=r"unet' holds several variants .*\(variants: ema, fp16\)"
    ):
        ck.variant_of("unet")
