"""What export cannot read is one ExportError line naming the file and the field, never a
traceback, and nothing is written to --out; single files and the CLI's checkpoint flags;
no network access is ever attempted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from checkpoint_forms import stored_form

from w2sd.errors import ExportError

SCENARIO = Path(__file__).with_name("offline_scenario.py")


def _export(strong: Path, out: Path, **extra: object) -> None:
    from export.engine_export import ExportOptions, export_engine

    export_engine(ExportOptions(strong=strong, weak=strong, out=out, log=lambda m: None, **extra))  # type: ignore[arg-type]


def _refused(strong: Path, tmp_path: Path, match: str, **extra: object) -> ExportError:
    out = tmp_path / "engines" / "out"
    with pytest.raises(ExportError, match=match) as err:
        _export(strong, out, **extra)
    assert "\n" not in str(err.value)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    return err.value


def _copy(zoo, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    return Path(shutil.copytree(zoo.pipeline("sd1", 1), tmp_path / "copy"))


def _rewrite_header(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


def _first_tensor(header: dict) -> str:  # type: ignore[type-arg]
    return sorted(k for k in header if k != "__metadata__")[0]


def test_folder_without_a_unet(zoo, tmp_path):  # type: ignore[no-untyped-def]
    folder = _copy(zoo, tmp_path)
    shutil.rmtree(folder / "unet")
    err = _refused(folder, tmp_path, r"--strong: '.*copy' has no UNet \(no unet/config.json\)")
    assert err.param == "unet"


def test_unknown_pipeline_class(zoo, tmp_path):  # type: ignore[no-untyped-def]
    folder = _copy(zoo, tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    index = {"_class_name": "KandinskyV22Pipeline", "unet": index["unet"], "movq": ["x", "y"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    err = _refused(
        folder, tmp_path, r"model_index.json: .*field '_class_name'.*'KandinskyV22Pipeline'"
    )
    assert err.param == "_class_name"


UNET_FILE = "unet/diffusion_pytorch_model.safetensors"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _bad_length(path: Path) -> None:
    path.write_bytes((2**40).to_bytes(8, "little") + path.read_bytes()[8:])


def _not_json(path: Path) -> None:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    path.write_bytes(raw[:8] + b"{" * n + raw[8 + n :])


def _lying_shape(path: Path) -> None:
    def edit(header: dict) -> None:  # type: ignore[type-arg]
        header[_first_tensor(header)]["shape"][0] *= 2

    _rewrite_header(path, edit)


def _lying_dtype(path: Path) -> None:
    def edit(header: dict) -> None:  # type: ignore[type-arg]
        header[_first_tensor(header)]["dtype"] = "F31"

    _rewrite_header(path, edit)


@pytest.mark.parametrize(
    "damage,match,param",
    [
        (_truncate, r"tensor '.*' field 'data_offsets' \[\d+, \d+\] lies outside", "data_offsets"),
        (
            _bad_length,
            r"safetensors field 'header_length' \(1099511627776\) runs past the end",
            "header_length",
        ),
        (_not_json, r"safetensors header is not JSON", "header"),
        (_lying_shape, r"tensor '.*' field 'shape' \[[\d, ]+\] in F32 needs \d+ bytes", "shape"),
        (_lying_dtype, r"tensor '.*' field 'dtype' is 'F31'", "dtype"),
    ],
)
def test_damaged_weights_file(zoo, tmp_path, damage, match, param):  # type: ignore[no-untyped-def]
    folder = _copy(zoo, tmp_path)
    damage(folder / UNET_FILE)
    err = _refused(folder, tmp_path, f"{folder / UNET_FILE}: {match}")
    assert err.param == param


def test_damaged_bin_file(zoo, tmp_path):  # type: ignore[no-untyped-def]
    folder = _copy(zoo, tmp_path)
    te = folder / "text_encoder"
    (te / "model.safetensors").unlink()
    (te / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip")
    _refused(folder, tmp_path, r"text_encoder/pytorch_model.bin: not a readable PyTorch weights")


@pytest.fixture(scope="module")
def sd1_file(zoo) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A single-file SD 1.x checkpoint (fp16) and its config folder."""
    path, extra = stored_form(zoo, "sd1", "single-file")
    return path, extra["strong_config"]  # type: ignore[return-value]


def _without(src: Path, dst: Path, prefix: str) -> Path:
    from safetensors.torch import load_file, save_file

    save_file({k: v for k, v in load_file(str(src)).items() if not k.startswith(prefix)}, str(dst))
    return dst


def test_single_file_needs_its_config_folder(sd1_file, tmp_path):  # type: ignore[no-untyped-def]
    path, _ = sd1_file
    err = _refused(
        path,
        tmp_path,
        r"single-file SD 1.x checkpoint; its configs are missing: pass --strong-config",
    )
    assert err.param == "strong_config"


@pytest.mark.parametrize(
    "prefix,match",
    [
        ("model.diffusion_model.", r"cannot tell its architecture: no UNet weights"),
        ("cond_stage_model.", r"cannot tell its architecture: no text encoder weights"),
        ("first_stage_model.", r"no VAE weights \(no tensor named 'first_stage_model.\*'\)"),
    ],
)
def test_single_file_missing_a_part(sd1_file, tmp_path, prefix, match):  # type: ignore[no-untyped-def]
    path, config = sd1_file
    part = _without(path, tmp_path / "part.safetensors", prefix)
    _refused(part, tmp_path, match, strong_config=config)


def test_single_file_of_another_architecture(zoo, sd1_file, tmp_path):  # type: ignore[no-untyped-def]
    path, _ = sd1_file
    _refused(
        path,
        tmp_path,
        r"holds SD 1.x weights but its config folder .* is a sdxl pipeline",
        strong_config=zoo.pipeline("sdxl", 1),
    )
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"pickle")
    _refused(ckpt, tmp_path, r"neither a diffusers folder nor a .safetensors single file")


def test_cli_prints_one_line(zoo, tmp_path, capsys):  # type: ignore[no-untyped-def]
    from w2sd_cli import main

    folder = _copy(zoo, tmp_path)
    _truncate(folder / UNET_FILE)
    out = tmp_path / "out"
    code = main(["export", "--strong", str(folder), "--weak", str(folder), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists()
    assert err[-1].startswith(f"w2sd export: error: {folder / UNET_FILE}: tensor ")
    assert not any("Traceback" in line for line in err)


def _offline(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    log = tmp_path / "network.log"
    log.write_text("")
    env = {
        k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE") and k != "HF_HUB_CACHE"
    }
    env.update(W2SD_NETWORK_LOG=str(log), HF_HOME=str(tmp_path / "hf-home"))
    proc = subprocess.run(
        [sys.executable, str(SCENARIO), *args], capture_output=True, text=True, env=env
    )
    return proc, log.read_text()


def test_export_never_touches_the_network(zoo, sd1_file, tmp_path):  # type: ignore[no-untyped-def]
    """A single file (with --strong-config) and a variant-only folder (--variant fp16)
    export with every connection refused and the Hub's offline switches off; the guard
    itself does catch an attempt (the probe)."""
    probe, attempts = _offline(["--probe"], tmp_path)
    assert probe.returncode == 0 and attempts.strip(), probe.stderr[-2000:]
    path, config = sd1_file
    weak, _ = stored_form(zoo, "sd1", "fp16-variant-only")
    out = tmp_path / "engine"
    args = ["export", "--strong", str(path), "--strong-config", str(config), "--weak", str(weak)]
    proc, attempts = _offline(
        [*args, "--variant", "fp16", "--out", str(out), "--no-verify"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert attempts == ""
    stored = json.loads((out / "manifest.json").read_text())["stored"]
    assert stored["strong"]["format"] == "single_file" and stored["weak"]["variant"] == "fp16"
