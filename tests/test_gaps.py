"""Every gap type of the paper, for SD 1.x, SD 2.x (v-prediction) and SDXL, against the
diffusers reference within the spec's fp32 bounds; one artifact/one session for the
condition gap; clear errors for incompatible strong/weak pairs and bad LoRAs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    STEPS,
    ModelZoo,
    assert_images_match,
    assert_latents_close,
    relative_diff,
)
from export.lora import LoraSpec
from w2sd import InvalidArgumentError, W2SDRuntime
from w2sd.latents import initial_latents

FAMILIES = ["sd1", "sd2", "sdxl"]
PROMPT = "a photo of a cat riding a horse"
REFINED = "a detailed high quality photo of a black cat riding a white horse, sunset"


def _weight_gap(zoo: ModelZoo, family: str):  # type: ignore[no-untyped-def]
    """Strong and weak are different UNets; the denoiser is a third one."""
    folders = dict(
        strong=zoo.pipeline(family, 1),
        weak=zoo.pipeline(family, 2),
        denoiser=zoo.pipeline(family, 3),
    )
    engine = zoo.engine(f"{family}-weight", **folders)
    return engine, zoo.reference(f"{family}-weight", **folders)


def _own_text_gap(zoo: ModelZoo, family: str):  # type: ignore[no-untyped-def]
    """Weight gap between fine-tunes that ship their own text encoders: each role's
    pipeline has different UNet *and* text encoder weights."""
    folders = dict(
        strong=zoo.pipeline(family, 1),
        weak=zoo.pipeline(family, 2, text_seed=11),
        denoiser=zoo.pipeline(family, 3, text_seed=21),
    )
    engine = zoo.engine(f"{family}-own-text", **folders)
    return engine, zoo.reference(f"{family}-own-text", **folders)


def _lora_gap(zoo: ModelZoo, family: str, mode: str = "input"):  # type: ignore[no-untyped-def]
    """One base UNet, one LoRA at +1.5 (strong), -1.5 (weak), 0.8 (denoiser): the authors'.
    mode "input": one artifact, the scale a graph input; "fused": one artifact per scale."""
    base = zoo.pipeline(family, 1)
    lora = zoo.lora(family)
    loras = dict(
        strong_lora=LoraSpec(lora, 1.5),
        weak_lora=LoraSpec(lora, -1.5),
        denoiser_lora=LoraSpec(lora, 0.8),
    )
    engine = zoo.engine(f"{family}-lora-{mode}", strong=base, weak=base, lora_mode=mode, **loras)
    return engine, zoo.reference(f"{family}-lora", strong=base, weak=base, **loras)


def _fused_lora_gap(zoo: ModelZoo, family: str):  # type: ignore[no-untyped-def]
    return _lora_gap(zoo, family, "fused")


def _condition_gap(zoo: ModelZoo, family: str):  # type: ignore[no-untyped-def]
    """One UNet for every role; the gap is in guidance and prompts."""
    base = zoo.pipeline(family, 1)
    engine = zoo.engine(f"{family}-condition", strong=base, weak=base, weak_guidance=1.0)
    return engine, zoo.reference(f"{family}-condition", strong=base, weak=base)


GAPS = {
    # name: (engine+reference builder, sample-time settings)
    "weight": (_weight_gap, dict(weak_guidance=7.5)),
    "weight-own-text": (_own_text_gap, dict(weak_guidance=7.5)),
    "weight-own-text+condition": (
        _own_text_gap,
        dict(weak_guidance=1.0, strong_prompt=REFINED, weak_negative_prompt="blurry, low quality"),
    ),
    "lora": (_lora_gap, dict(weak_guidance=7.5)),
    "lora-fused": (_fused_lora_gap, dict(weak_guidance=7.5)),
    "condition": (
        _condition_gap,
        dict(weak_guidance=1.0, strong_prompt=REFINED, denoiser_guidance=4.0),
    ),
    "weight+condition": (
        _weight_gap,
        dict(weak_guidance=1.0, strong_prompt=REFINED, weak_negative_prompt="blurry, low quality"),
    ),
    "lora+condition": (_lora_gap, dict(weak_guidance=1.0, strong_prompt=REFINED)),
}


def _sample_both(engine: Path, reference, settings: dict, inversion: str, seed: int = 4):  # type: ignore[no-untyped-def]
    settings = dict(settings)
    rt = W2SDRuntime(engine)
    x = initial_latents(seed, (1, 4, 8, 8))
    role_prompts = {r: settings.pop(f"{r}_prompt", None) for r in ("strong", "weak", "denoiser")}
    role_negatives = {
        r: settings.pop(f"{r}_negative_prompt", None) for r in ("strong", "weak", "denoiser")
    }
    common = dict(
        num_inference_steps=STEPS,
        reflection_steps=6,
        strong_guidance=7.5,
        inversion=inversion,
        **settings,
    )
    got = rt.sample(
        PROMPT,
        latents=x,
        output_type="np",
        **common,
        **{f"{r}_prompt": p for r, p in role_prompts.items()},
        **{f"{r}_negative_prompt": n for r, n in role_negatives.items()},
    )
    got_latents = rt.sample(
        PROMPT,
        latents=x,
        output_type="latent",
        **common,
        **{f"{r}_prompt": p for r, p in role_prompts.items()},
        **{f"{r}_negative_prompt": n for r, n in role_negatives.items()},
    )
    ref = reference.sample(
        PROMPT,
        latents=x,
        output_type="np",
        role_prompts=role_prompts,
        role_negative_prompts=role_negatives,
        **common,
    )
    return rt, got, got_latents, ref


@pytest.mark.parametrize("inversion", ["official", "exact"])
@pytest.mark.parametrize("gap", sorted(GAPS))
@pytest.mark.parametrize("family", FAMILIES)
def test_gap_parity(zoo, family, gap, inversion):  # type: ignore[no-untyped-def]
    build, settings = GAPS[gap]
    engine, reference = build(zoo, family)
    rt, got, got_latents, ref = _sample_both(engine, reference, settings, inversion)
    assert_latents_close(got_latents, ref.latents)
    assert_images_match(got, ref.images)
    assert rt.last_stats["unet_calls"] == ref.unet_calls == STEPS + 2 * 6


@pytest.mark.parametrize("family", FAMILIES)
def test_condition_gap_has_one_artifact_and_one_session(zoo, family):  # type: ignore[no-untyped-def]
    engine, _ = _condition_gap(zoo, family)
    m = json.loads((engine / "manifest.json").read_text())
    assert len(m["unets"]) == 1
    onnx_unets = sorted(p.relative_to(engine).as_posix() for p in engine.rglob("unet*/model.onnx"))
    assert onnx_unets == ["cpu/unet0/model.onnx", "unet0/model.onnx"]
    assert W2SDRuntime(engine).num_unet_sessions == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_lora_gap_has_one_artifact_per_scale(zoo, family):  # type: ignore[no-untyped-def]
    engine, _ = _lora_gap(zoo, family, "fused")
    m = json.loads((engine / "manifest.json").read_text())
    assert [u["lora"]["scale"] for u in m["unets"]] == [1.5, -1.5, 0.8]
    assert W2SDRuntime(engine).num_unet_sessions == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_gap_shares_one_unet_with_the_scale_as_input(zoo, family):  # type: ignore[no-untyped-def]
    """The authors' three scales on one artifact and one session, each role's scale recorded."""
    engine, _ = _lora_gap(zoo, family)
    m = json.loads((engine / "manifest.json").read_text())
    assert len(m["unets"]) == 1
    assert m["unets"][0]["lora"]["input"] == "lora_scale"
    assert m["unets"][0]["lora"]["scale"] is None
    assert {r: m["roles"][r]["lora_scale"] for r in m["roles"]} == {
        "strong": 1.5,
        "weak": -1.5,
        "denoiser": 0.8,
    }
    onnx_unets = sorted(p.relative_to(engine).as_posix() for p in engine.rglob("unet*/model.onnx"))
    assert onnx_unets == ["cpu/unet0/model.onnx", "unet0/model.onnx"]
    assert W2SDRuntime(engine).num_unet_sessions == 1


@pytest.mark.parametrize("inversion", ["official", "exact"])
@pytest.mark.parametrize("family", FAMILIES)
def test_unfused_lora_matches_fused_lora(zoo, family, inversion):  # type: ignore[no-untyped-def]
    """The same request on the one-artifact engine and on the fused one (spec bound)."""
    x = initial_latents(6, (1, 4, 8, 8))
    kw = dict(latents=x, num_inference_steps=STEPS, reflection_steps=6, inversion=inversion)
    one = W2SDRuntime(_lora_gap(zoo, family)[0]).sample(PROMPT, output_type="latent", **kw)
    fused = W2SDRuntime(_lora_gap(zoo, family, "fused")[0]).sample(
        PROMPT, output_type="latent", **kw
    )
    assert_latents_close(one, fused)


SCALE_CASES = {
    "authors-swapped": dict(strong_lora_scale=-1.5, weak_lora_scale=1.5, denoiser_lora_scale=0.0),
    "stronger": dict(strong_lora_scale=2.0, weak_lora_scale=-0.5),
}


@pytest.mark.parametrize("case", sorted(SCALE_CASES))
@pytest.mark.parametrize("inversion", ["official", "exact"])
@pytest.mark.parametrize("family", FAMILIES)
def test_per_request_lora_scales_match_reference(zoo, family, inversion, case):  # type: ignore[no-untyped-def]
    """Scales chosen per request, no rebuild: the reference at the same scales (spec bound),
    and different from the export-time scales."""
    engine, reference = _lora_gap(zoo, family)
    scales = SCALE_CASES[case]
    rt = W2SDRuntime(engine)
    x = initial_latents(8, (1, 4, 8, 8))
    kw = dict(
        latents=x,
        num_inference_steps=STEPS,
        reflection_steps=6,
        strong_guidance=7.5,
        weak_guidance=7.5,
        inversion=inversion,
    )
    got = rt.sample(PROMPT, output_type="latent", **kw, **scales)
    default = rt.sample(PROMPT, output_type="latent", **kw)
    ref = reference.sample(
        PROMPT,
        output_type="np",
        lora_scales={k.removesuffix("_lora_scale"): v for k, v in scales.items()},
        **kw,
    )
    assert_latents_close(got, ref.latents)
    assert relative_diff(default, ref.latents) > 1e-2  # the scales really changed the result


def test_lora_scale_on_an_engine_without_one_is_refused(zoo):  # type: ignore[no-untyped-def]
    fused, _ = _lora_gap(zoo, "sd1", "fused")
    for engine in (fused, _condition_gap(zoo, "sd1")[0]):
        rt = W2SDRuntime(engine)
        with pytest.raises(InvalidArgumentError, match="takes no LoRA scale") as err:
            rt.sample(PROMPT, weak_lora_scale=0.5, num_inference_steps=2, reflection_steps=1)
        assert err.value.param == "weak_lora_scale"
    rt = W2SDRuntime(_lora_gap(zoo, "sd1")[0])
    with pytest.raises(InvalidArgumentError, match="finite") as err:
        rt.sample(PROMPT, strong_lora_scale=float("nan"))
    assert err.value.param == "strong_lora_scale"


ENCODERS_PER_SET = {"sd1": 1, "sd2": 1, "sdxl": 2}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_role_has_its_own_text_encoders(zoo, family):  # type: ignore[no-untyped-def]
    """Three pipelines with their own text encoders: three encoder sets, each encoder
    exported, stored and loaded once; identical encoders (the plain weight gap, whose
    pipelines share text weights) collapse to one set."""
    per_set = ENCODERS_PER_SET[family]
    engine, _ = _own_text_gap(zoo, family)
    m = json.loads((engine / "manifest.json").read_text())
    assert [m["roles"][r]["text"] for r in ("strong", "weak", "denoiser")] == [0, 1, 2]
    assert len(m["text"]["encoders"]) == 3 * per_set
    sets = [s["encoders"] for s in m["text"]["encoder_sets"]]
    assert sorted(i for s in sets for i in s) == list(range(3 * per_set))
    assert W2SDRuntime(engine).num_text_encoder_sessions == 3 * per_set

    shared, _ = _weight_gap(zoo, family)
    m = json.loads((shared / "manifest.json").read_text())
    assert len(m["text"]["encoder_sets"]) == 1 and len(m["text"]["encoders"]) == per_set
    assert {m["roles"][r]["text"] for r in ("strong", "weak", "denoiser")} == {0}
    assert W2SDRuntime(shared).num_text_encoder_sessions == per_set


def test_own_text_encoders_change_the_result(zoo):  # type: ignore[no-untyped-def]
    """The weak role is encoded by its own pipeline's encoder, not the strong one's."""
    own, _ = _own_text_gap(zoo, "sd1")
    rt = W2SDRuntime(own)
    strong_h, _ = rt.encode([PROMPT], role="strong")
    weak_h, _ = rt.encode([PROMPT], role="weak")
    assert np.abs(strong_h - weak_h).max() > 1e-2


def test_per_role_prompt_changes_the_result(zoo):  # type: ignore[no-untyped-def]
    engine, _ = _condition_gap(zoo, "sd1")
    rt = W2SDRuntime(engine)
    x = initial_latents(1, (1, 4, 8, 8))
    plain = rt.sample(PROMPT, latents=x, output_type="latent")
    refined = rt.sample(PROMPT, latents=x, output_type="latent", strong_prompt=REFINED)
    assert np.abs(plain - refined).max() > 1e-3


def test_sdxl_empty_negative_uses_zeros(zoo):  # type: ignore[no-untyped-def]
    """force_zeros_for_empty_prompt: no negative -> zero embeddings, unlike negative=""."""
    engine, _ = _condition_gap(zoo, "sdxl")
    m = json.loads((engine / "manifest.json").read_text())
    assert [s["force_zeros_for_empty_prompt"] for s in m["text"]["encoder_sets"]] == [True]
    assert m["unet_added_conditions"] == {"pooled_dim": 32, "time_ids_dim": 6}
    rt = W2SDRuntime(engine)
    x = initial_latents(1, (1, 4, 8, 8))
    zeros = rt.sample(PROMPT, latents=x, output_type="latent")
    empty = rt.sample(PROMPT, "", latents=x, output_type="latent")
    assert np.abs(zeros - empty).max() > 1e-3


def test_kohya_lora_matches_diffusers_format(zoo):  # type: ignore[no-untyped-def]
    """The same LoRA weights in kohya/A1111 keys give the same result."""
    base = zoo.pipeline("sd1", 1)
    kohya = zoo.lora("sd1", fmt="kohya")
    engine = zoo.engine(
        "sd1-lora-kohya",
        strong=base,
        weak=base,
        strong_lora=LoraSpec(kohya, 1.5),
        weak_lora=LoraSpec(kohya, -1.5),
        denoiser_lora=LoraSpec(kohya, 0.8),
    )
    _, reference = _lora_gap(zoo, "sd1")  # diffusers-format file, same weights
    _, got, got_latents, ref = _sample_both(engine, reference, dict(weak_guidance=7.5), "official")
    assert_latents_close(got_latents, ref.latents)
    assert_images_match(got, ref.images)


# -- incompatible pairs and bad LoRAs ---------------------------------------------------


def _edited_copy(src: Path, dst: Path, rel: str, **changes: object) -> Path:
    shutil.copytree(src, dst)
    cfg_path = dst / rel
    cfg = json.loads(cfg_path.read_text())
    cfg.update(changes)
    cfg_path.write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize(
    "rel,changes,message",
    [
        ("vae/config.json", {"latent_channels": 8}, "vae config field 'latent_channels'"),
        (
            "scheduler/scheduler_config.json",
            {"beta_end": 0.02},
            "scheduler_config field 'beta_end'",
        ),
        (
            "scheduler/scheduler_config.json",
            {"prediction_type": "v_prediction"},
            "scheduler_config field 'prediction_type'",
        ),
        (
            "text_encoder/config.json",
            {"hidden_size": 64},
            "text_encoder config field 'hidden_size'",
        ),
        (
            "unet/config.json",
            {"cross_attention_dim": 64},
            "unet config field 'cross_attention_dim'",
        ),
        ("unet/config.json", {"in_channels": 9}, "unet config field 'in_channels'"),
        (
            "tokenizer/tokenizer_config.json",
            {"model_max_length": 64},
            "tokenizer field 'max_length' differs \\(77 vs 64\\)",
        ),
    ],
)
def test_incompatible_pair_names_the_field(zoo, tmp_path, rel, changes, message):  # type: ignore[no-untyped-def]
    from export.engine_export import ExportOptions, export_engine

    weak = _edited_copy(zoo.pipeline("sd1", 2), tmp_path / "weak", rel, **changes)
    with pytest.raises(InvalidArgumentError, match=message):
        export_engine(
            ExportOptions(
                strong=zoo.pipeline("sd1", 1), weak=weak, out=tmp_path / "out", log=lambda m: None
            )
        )
    assert not (tmp_path / "out").exists()


def test_family_mismatch(zoo, tmp_path):  # type: ignore[no-untyped-def]
    from export.engine_export import ExportOptions, export_engine

    with pytest.raises(InvalidArgumentError, match="model family differs"):
        export_engine(
            ExportOptions(
                strong=zoo.pipeline("sd1", 1),
                weak=zoo.pipeline("sdxl", 1),
                out=tmp_path / "out",
                log=lambda m: None,
            )
        )


@pytest.mark.parametrize(
    "kind", ["not_safetensors", "no_lora_keys", "text_encoder_only", "wrong_unet"]
)
def test_malformed_lora_is_a_clear_error(zoo, tmp_path, kind):  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import save_file

    from export.engine_export import ExportOptions, export_engine

    bad = tmp_path / "bad.safetensors"
    if kind == "not_safetensors":
        bad.write_bytes(b"this is not a safetensors file")
        message = "cannot be read"
    elif kind == "no_lora_keys":
        save_file({"unet.conv_in.weight": torch.zeros(2, 2)}, str(bad))
        message = "not a LoRA checkpoint"
    elif kind == "text_encoder_only":
        save_file({"text_encoder.layer.lora_A.weight": torch.zeros(2, 2)}, str(bad))
        message = "has no UNet weights"
    else:
        bad = zoo.lora("sdxl")  # an SDXL LoRA on an SD 1.x UNet
        message = "does not fit this UNet|size mismatch|cannot be read"
    base = zoo.pipeline("sd1", 1)
    with pytest.raises(InvalidArgumentError, match=message):
        export_engine(
            ExportOptions(
                strong=base,
                weak=base,
                strong_lora=LoraSpec(bad, 1.0),
                out=tmp_path / "out",
                verify=False,
                log=lambda m: None,
            )
        )
    assert not (tmp_path / "out").exists()


def test_lora_spec_parsing(tmp_path):  # type: ignore[no-untyped-def]
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"")
    assert LoraSpec.parse(f"{f}:-1.5") == LoraSpec(f, -1.5)
    assert LoraSpec.parse(str(f)) == LoraSpec(f, 1.0)
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        LoraSpec.parse(str(tmp_path / "missing.safetensors:1.0"))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_exported_model_checked_against_torch(zoo, family):  # type: ignore[no-untyped-def]
    """Export checks each ONNX model against its PyTorch module (spec bound) and records it."""
    engine, _ = _weight_gap(zoo, family)
    m = json.loads((engine / "manifest.json").read_text())
    expected = {e["file"].split("/")[0] for e in m["text"]["encoders"]}
    expected |= {"vae_decoder", "unet0", "unet1", "unet2"}
    assert set(m["export_checks"]) == expected
    if family == "sdxl":
        assert [e["outputs"] for e in m["text"]["encoders"]] == [
            ["hidden_states"],
            ["hidden_states", "text_embeds"],
        ]
        assert m["models"]["unet"]["inputs"][-2:] == ["text_embeds", "time_ids"]
    if family == "sd2":
        assert m["scheduler"]["prediction_type"] == "v_prediction"


def test_lora_scales_from_the_cli_and_the_http_body(zoo, tmp_path):  # type: ignore[no-untyped-def]
    """The CLI flags and the HTTP body fields reach the request and change the image."""
    from PIL import Image

    from w2sd_cli import main
    from w2sd_serve.schema import ImageGenerationRequest, Limits, to_sample_request

    engine, _ = _lora_gap(zoo, "sd1")
    body = ImageGenerationRequest(prompt=PROMPT, weak_lora_scale=0.5, strong_lora_scale=2.0)
    request = to_sample_request(body, Limits())
    assert (request.strong_lora_scale, request.weak_lora_scale) == (2.0, 0.5)
    common = [str(engine), PROMPT, "--seed", "3", "--steps", "4", "--reflection-steps", "2"]
    assert main(["sample", *common, "--output", str(tmp_path / "a.png")]) == 0
    scaled = ["--weak-lora-scale", "0.5", "--output", str(tmp_path / "b.png")]
    assert main(["sample", *common, *scaled]) == 0
    a = np.asarray(Image.open(tmp_path / "a.png"))
    b = np.asarray(Image.open(tmp_path / "b.png"))
    want = W2SDRuntime(engine).sample(
        PROMPT,
        seed=3,
        num_inference_steps=4,
        reflection_steps=2,
        weak_lora_scale=0.5,
        output_type="np",
    )[0]
    assert np.array_equal(b, want) and not np.array_equal(a, b)
