"""Every exported ONNX model against its PyTorch module (spec bound), and the engine dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import relative_diff
from export import onnx_export as ox
from w2sd.spec_bounds import FP32_LATENT_RTOL


def _onnx_run(path: Path, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]


def _torch_run(module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return module(*inputs.values()).numpy()


@pytest.mark.parametrize("batch,hw,t", [(2, 8, 981.0), (4, 16, 1.0), (1, 32, 500.0)])
@pytest.mark.parametrize("unet_index,role", [(0, "strong"), (1, "weak")])
def test_unet_onnx_matches_torch(engine_dir, tiny_pair, unet_index, role, batch, hw, t):  # type: ignore[no-untyped-def]
    from diffusers import UNet2DConditionModel

    folder = tiny_pair[0] if role == "strong" else tiny_pair[1]
    unet = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
    gen = torch.Generator().manual_seed(batch * 100 + hw)
    inputs = {
        "sample": torch.randn(batch, 4, hw, hw, generator=gen),
        "timestep": torch.tensor([t]),
        "encoder_hidden_states": torch.randn(batch, 77, 32, generator=gen),
    }
    for rel in (f"unet{unet_index}/model.onnx", f"cpu/unet{unet_index}/model.onnx"):
        got = _onnx_run(engine_dir / rel, inputs)
        assert relative_diff(got, _torch_run(ox.UnetForExport(unet), inputs)) <= FP32_LATENT_RTOL


def test_text_encoder_onnx_matches_torch(engine_dir, tiny_pair):  # type: ignore[no-untyped-def]
    from transformers import CLIPTextModel

    te = CLIPTextModel.from_pretrained(tiny_pair[0] / "text_encoder").eval()
    ids = torch.randint(
        0, te.config.vocab_size, (3, 77), generator=torch.Generator().manual_seed(1)
    )
    for rel in ("text_encoder0/model.onnx", "cpu/text_encoder0/model.onnx"):
        got = _onnx_run(engine_dir / rel, {"input_ids": ids})
        assert (
            relative_diff(
                got, _torch_run(ox.TextEncoderForExport(te, "last", False), {"input_ids": ids})
            )
            <= FP32_LATENT_RTOL
        )


@pytest.mark.parametrize("hw", [8, 12])
def test_vae_decoder_onnx_matches_torch(engine_dir, tiny_pair, hw):  # type: ignore[no-untyped-def]
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_pair[0] / "vae").eval()
    z = {"latent_sample": torch.randn(2, 4, hw, hw, generator=torch.Generator().manual_seed(2))}
    for rel in ("vae_decoder/model.onnx", "cpu/vae_decoder/model.onnx"):
        got = _onnx_run(engine_dir / rel, z)
        assert relative_diff(got, _torch_run(ox.VaeDecoderForExport(vae), z)) <= FP32_LATENT_RTOL


def test_tokenizer_json_matches_pipeline_tokenizer(engine_dir, tiny_pair):  # type: ignore[no-untyped-def]
    from transformers import CLIPTokenizer

    from w2sd.tokenizer import ClipTokenizer

    ref = CLIPTokenizer.from_pretrained(tiny_pair[0] / "tokenizer")
    m = json.loads((engine_dir / "manifest.json").read_text())
    enc = m["text"]["encoders"][0]
    ours = ClipTokenizer(engine_dir / enc["tokenizer"], enc["max_length"], enc["pad_token_id"])
    texts = [
        "a red bicycle",
        "",
        "A PHOTO of an Astronaut, riding a horse!!",
        "unknownword xyzzy " * 40,
    ]
    expected = ref(texts, padding="max_length", max_length=77, truncation=True).input_ids
    np.testing.assert_array_equal(ours(texts), np.asarray(expected))


def test_manifest_contents(engine_dir):  # type: ignore[no-untyped-def]
    m = json.loads((engine_dir / "manifest.json").read_text())
    assert m["format"] == "w2sd-engine" and m["version"] == 5
    assert len(m["unets"]) == 2
    assert m["roles"]["strong"]["unet"] == m["roles"]["denoiser"]["unet"] == 0
    assert m["roles"]["weak"]["unet"] == 1
    assert len(m["scheduler"]["alphas_cumprod"]) == m["scheduler"]["num_train_timesteps"]
    assert m["scheduler"]["prediction_type"] == "epsilon"
    assert m["vae_scale_factor"] == 8 and m["latent_channels"] == 4
    # Weights live in external data files next to each model, with checksums.
    for rel in ("unet0/model.onnx", "unet0/model.onnx.data", "text_encoder0/model.onnx.data"):
        assert rel in m["artifacts"] and len(m["artifacts"][rel]["sha256"]) == 64
    # Every artifact was checked against its module (a check over the bound is refused).
    assert set(m["export_checks"]) == {"text_encoder0", "vae_decoder", "unet0", "unet1"}
    assert "cpu" in m["backends"]


def test_same_unet_is_exported_once(tiny_pair, tmp_path):  # type: ignore[no-untyped-def]
    """Condition gap: strong and weak are one model -> one UNet artifact."""
    from export.engine_export import ExportOptions, export_engine

    strong, _ = tiny_pair
    copy = tmp_path / "copy-of-strong"
    shutil.copytree(strong, copy)
    out = export_engine(
        ExportOptions(
            strong=strong, weak=copy, out=tmp_path / "e", verify=False, log=lambda m: None
        )
    )
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["unets"]) == 1
    assert {r["unet"] for r in m["roles"].values()} == {0}
    assert m["roles"]["weak"]["guidance"] == 1.0  # one UNet: the gap is in the guidance
    assert not (out / "unet1").exists()


def test_export_refuses_to_overwrite(tiny_pair, engine_dir):  # type: ignore[no-untyped-def]
    from export.engine_export import ExportOptions, export_engine
    from w2sd.errors import InvalidArgumentError

    before = (engine_dir / "manifest.json").read_bytes()
    with pytest.raises(InvalidArgumentError, match="exists and is not empty"):
        export_engine(
            ExportOptions(
                strong=tiny_pair[0], weak=tiny_pair[1], out=engine_dir, log=lambda m: None
            )
        )
    assert (engine_dir / "manifest.json").read_bytes() == before


def test_export_rejects_non_diffusers_folder(tmp_path, tiny_pair):  # type: ignore[no-untyped-def]
    from export.engine_export import ExportOptions, export_engine
    from w2sd.errors import ExportError

    with pytest.raises(ExportError, match="--weak.*model_index.json"):
        export_engine(
            ExportOptions(
                strong=tiny_pair[0], weak=tmp_path, out=tmp_path / "o", log=lambda m: None
            )
        )
    assert not (tmp_path / "o").exists()


def test_export_parity_failure_is_a_w2sd_error(tiny_pair, tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """An export that does not reproduce its module is an ExportVerificationError; the CLI
    prints one line and exits 2, and no engine dir is left behind."""
    from export import engine_export
    from w2sd import ExportVerificationError
    from w2sd_cli import main

    monkeypatch.setattr(engine_export.ox, "compare_with_onnx", lambda *a, **k: 3e-2)
    out = tmp_path / "bad"
    with pytest.raises(ExportVerificationError, match=r"differs from PyTorch by 3.00e-02"):
        engine_export.export_engine(
            engine_export.ExportOptions(
                strong=tiny_pair[0], weak=tiny_pair[1], out=out, log=lambda m: None
            )
        )
    assert not out.exists()
    capsys.readouterr()
    code = main(
        ["export", "--strong", str(tiny_pair[0]), "--weak", str(tiny_pair[1]), "--out", str(out)]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("w2sd export: error: exported ")
    assert not out.exists()


def test_export_memory_is_bounded_by_the_model(tmp_path):  # type: ignore[no-untyped-def]
    """Exporting (trace, write, verify) a 384 MiB model raises the process's peak resident
    memory by at most 1.5x its weights: the module, a serialized copy and a checking
    session of the same weights never coexist. Measured in a process of its own."""
    import subprocess
    import sys

    script = Path(__file__).with_name("export_memory_scenario.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, check=True
    )
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = r["peak_rise_bytes"] / r["weights_bytes"]
    assert ratio <= 1.5, f"export peak rose {ratio:.2f}x the weights (bound 1.5x)"
    assert r["check"] <= FP32_LATENT_RTOL
    assert r["data_bytes"] >= r["weights_bytes"]


def test_exported_weights_are_stored_transposed_not_transposed_at_run_time(engine_dir):  # type: ignore[no-untyped-def]
    """The tracer's weight transposes are folded into the stored tensors (as constant
    folding would), and every weight sits in the one external data file."""
    import onnx

    model = onnx.load(str(engine_dir / "unet0" / "model.onnx"), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    transposed = [
        n.name for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in inits
    ]
    assert transposed == []
    locations = {
        e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {"model.onnx.data"}
    assert not [i.name for i in model.graph.input if i.name in inits]
    # Nothing left that computes from constants alone (the OpenVINO EP would split there).
    from export.onnx_weights import fold_constants

    for rel in ("unet0", "text_encoder0", "vae_decoder"):
        m = onnx.load(str(engine_dir / rel / "model.onnx"), load_external_data=False)
        assert fold_constants(m.graph) == 0, rel


class _TraceDiffers(torch.nn.Module):
    """y = 2x when run, y = 2x + offset in the traced graph: an export that does not
    reproduce its module by a known amount."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = x * 2.0
        return y + self.offset if torch.jit.is_tracing() else y


def _inputs(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    return {"x": torch.randn(2, 5, generator=torch.Generator().manual_seed(seed))}


@pytest.mark.parametrize("offset", [0.0, 0.01, float("nan")])
def test_verification_measures_a_model_that_differs(tmp_path, offset):  # type: ignore[no-untyped-def]
    """The export check is the spec's measure of the written file against the module:
    max|onnx - torch| / max|torch|, inf when the file computes NaN."""
    from export.engine_export import _verified
    from w2sd import ExportVerificationError

    part = ox.Component(lambda: _TraceDiffers(offset), _inputs, ("y",), {})
    done = ox.export_component(part, tmp_path / "m" / "model.onnx")
    scale = float(2 * _inputs(torch.nn.Module(), 1)["x"].abs().max())
    checks: dict[str, float] = {}
    record = _verified(checks, lambda m: None)
    if offset == 0.0:
        assert done.check is not None and done.check <= 1e-7
        record("m", done)
        assert checks == {"m": done.check}
        return
    if offset != offset:  # NaN
        assert done.check == float("inf")
    else:
        assert done.check == pytest.approx(offset / scale, rel=1e-4)
        assert done.check > FP32_LATENT_RTOL
    with pytest.raises(ExportVerificationError, match="exported m differs from PyTorch"):
        record("m", done)
    assert checks == {}


def test_export_refuses_a_unet_whose_onnx_differs(tiny_pair, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A UNet whose traced graph differs from its eager run by 1e-3 of its output: export
    measures it, refuses it, and leaves nothing in --out or beside it."""
    from export.checkpoints import Checkpoint
    from export.engine_export import ExportOptions, export_engine
    from w2sd import ExportVerificationError

    load = Checkpoint.load_unet

    def perturbed(self):  # type: ignore[no-untyped-def]
        unet = load(self)
        forward = unet.forward

        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            out = forward(*args, **kwargs)
            return out if torch.jit.is_tracing() else (out[0] * 1.001,)

        unet.forward = run
        return unet

    monkeypatch.setattr(Checkpoint, "load_unet", perturbed)
    out = tmp_path / "engines" / "e"
    with pytest.raises(ExportVerificationError, match=r"exported unet0 differs .* by 9\.99e-04"):
        export_engine(
            ExportOptions(strong=tiny_pair[0], weak=tiny_pair[1], out=out, log=lambda m: None)
        )
    assert list(out.parent.iterdir()) == []
