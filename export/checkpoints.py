"""One role's weights as users store them, loaded with diffusers' and transformers' own
loaders, never the network (``local_files_only=True`` everywhere), always in fp32.

A role is a diffusers folder (fp32, fp16 or bf16 weights; plain or variant files such as
``diffusion_pytorch_model.fp16.safetensors``; .safetensors or .bin; sharded or not), or a
single-file checkpoint in the original (LDM/A1111/kohya) key layout with a local diffusers
folder that gives its configs, tokenizers and scheduler (``--strong-config FOLDER``):
diffusers' ``from_single_file(..., config=FOLDER, local_files_only=True)`` converts it.
What cannot be read is refused with an ExportError naming the file and the field.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2sd.errors import ExportError, W2SDError
from w2sd.manifest import sha256_file

from .families import Family, TextEncoderSpec, detect_family
from .weights_files import files_dtype, pick_variant, tensor_names, weight_files

SINGLE_FILE_SUFFIX = ".safetensors"
_UNET_KEYS = "model.diffusion_model."
_VAE_KEYS = ("first_stage_model.", "vae.")
# Text encoder key prefixes of each architecture's single file (diffusers' single_file_utils).
_TEXT_KEYS = {
    "sdxl": ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."),
    "sd2": ("cond_stage_model.model.",),
    "sd1": ("cond_stage_model.transformer.",),
}
ARCH_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
_ARCH_FAMILY = {"sd1": "sd", "sd2": "sd", "sdxl": "sdxl"}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


@contextlib.contextmanager
def loading(what: str, source: Path, param: str) -> Iterator[None]:
    """A loader's failure as one ExportError line naming the file."""
    try:
        yield
    except W2SDError:
        raise
    except Exception as e:  # diffusers/transformers/safetensors raise many types
        raise ExportError(f"{source}: cannot load {what}: {_first_line(e)}", param=param) from None


def single_file_arch(path: Path, need_vae: bool) -> str:
    """sd1, sd2 or sdxl, from a checked single file's tensor names; refuses a file whose
    architecture cannot be told, naming what is missing."""
    names = tensor_names(path)
    tops = sorted({n.split(".", 1)[0] for n in names})

    def has(prefix: str) -> bool:
        return any(n.startswith(prefix) for n in names)

    if not has(_UNET_KEYS):
        raise ExportError(
            f"{path}: cannot tell its architecture: no UNet weights (no tensor named "
            f"'{_UNET_KEYS}*'; its tensors: {', '.join(tops[:6]) or 'none'})",
            param="unet",
        )
    arch = next((a for a, keys in _TEXT_KEYS.items() if all(has(k) for k in keys)), None)
    if arch is None:
        raise ExportError(
            f"{path}: cannot tell its architecture: no text encoder weights (no tensor named "
            "'cond_stage_model.transformer.*' (SD 1.x), 'cond_stage_model.model.*' (SD 2.x) "
            "or 'conditioner.embedders.0/1.*' (SDXL))",
            param="text_encoder",
        )
    if need_vae and not any(has(k) for k in _VAE_KEYS):
        raise ExportError(
            f"{path}: no VAE weights (no tensor named 'first_stage_model.*')", param="vae"
        )
    return arch


@dataclass(frozen=True)
class Checkpoint:
    """A role's weights: ``path`` (a diffusers folder or a single file) and ``config_dir``
    (the diffusers folder that describes it: the folder itself, or the single file's
    config folder); ``variant`` as asked with --variant."""

    role: str
    path: Path
    config_dir: Path
    variant: str | None = None

    @property
    def single_file(self) -> bool:
        return self.path.is_file()

    @property
    def flag(self) -> str:
        return f"--{self.role}"

    def model_index(self) -> dict[str, Any]:
        return _read_json(self.config_dir / "model_index.json")

    def family(self) -> Family:
        try:
            return detect_family(self.model_index())
        except ExportError as e:
            raise ExportError(f"{self.config_dir / 'model_index.json'}: {e}", e.param) from None

    def config(self, sub: str) -> dict[str, Any]:
        return _read_json(self.config_dir / sub / "config.json")

    def has_config(self, sub: str) -> bool:
        return (self.config_dir / sub / "config.json").is_file()

    def same_as(self, other: Checkpoint) -> bool:
        return (
            self.path.resolve() == other.path.resolve()
            and self.config_dir.resolve() == other.config_dir.resolve()
        )

    def variant_of(self, sub: str) -> str | None:
        return None if self.single_file else pick_variant(self.path / sub, self.variant, self.flag)

    def files(self, sub: str) -> list[Path]:
        """The weights files `sub` is loaded from (the single file for all of them)."""
        if self.single_file:
            return [self.path]
        return weight_files(self.path / sub)[self.variant_of(sub)]

    def digest(self, sub: str) -> list[tuple[str, str]]:
        """What identifies `sub`'s weights: its files' names and hashes."""
        return [(p.name, sha256_file(p)) for p in self.files(sub)]

    def check(self, subs: tuple[str, ...]) -> str:
        """Check every weights file `subs` load from (headers, sizes); return the dtype the
        UNet is stored in ("float16", ...)."""
        dtypes = {sub: files_dtype(self.files(sub)) for sub in dict.fromkeys(subs)}
        return dtypes["unet"]

    def stored(self, dtype: str) -> dict[str, Any]:
        """The manifest's record of how this role's weights were stored."""
        return {
            "format": "single_file" if self.single_file else "diffusers",
            "config": str(self.config_dir),
            "variant": self.variant_of("unet"),
            "dtype": dtype,
        }

    # -- loaders (fp32 whatever the stored dtype) ---------------------------------------

    def load_unet(self) -> Any:
        from diffusers import UNet2DConditionModel

        return self._load_model(UNet2DConditionModel, "unet", "the UNet")

    def load_vae(self) -> Any:
        from diffusers import AutoencoderKL

        return self._load_model(AutoencoderKL, "vae", "the VAE")

    def _load_model(self, cls: Any, sub: str, what: str) -> Any:
        """A diffusers model: from_single_file (its config from config_dir) or
        from_pretrained of the folder's `sub`."""
        with loading(what, self.path, sub):
            if self.single_file:
                model = cls.from_single_file(
                    str(self.path), **self._single_file_kwargs(), subfolder=sub
                )
            else:
                model = cls.from_pretrained(self.path / sub, **self._folder_kwargs(sub))
        return _fp32(model)

    def load_text_encoder(self, spec: TextEncoderSpec) -> Any:

        with loading(spec.encoder, self.path, spec.encoder):
            if self.single_file:
                module = self._single_file_component(spec.encoder)
            else:
                kwargs = self._folder_kwargs(spec.encoder)
                kwargs["dtype"] = kwargs.pop("torch_dtype")  # transformers' name for it
                module = spec.model_class().from_pretrained(self.path / spec.encoder, **kwargs)
        return _fp32(module)

    def _folder_kwargs(self, sub: str) -> dict[str, Any]:
        import torch

        files = self.files(sub)
        return {
            "variant": self.variant_of(sub),
            # Said, not guessed: diffusers finds sharded .bin files only when told.
            "use_safetensors": all(p.suffix == ".safetensors" for p in files),
            "torch_dtype": torch.float32,
            "local_files_only": True,
        }

    def _single_file_kwargs(self) -> dict[str, Any]:
        import torch

        return {
            "config": str(self.config_dir),
            "torch_dtype": torch.float32,
            "local_files_only": True,
        }

    def _single_file_component(self, name: str) -> Any:
        """One component of the single file through the pipeline's from_single_file, every
        other component left out (passed as None, which diffusers then does not load)."""
        pipeline_cls = self.family().pipeline_class()
        params = inspect.signature(pipeline_cls.__init__).parameters
        index = self.model_index()
        skip = {
            k: None
            for k, v in index.items()
            if k in params and k != name and isinstance(v, list) and len(v) == 2
        }
        pipe = pipeline_cls.from_single_file(str(self.path), **self._single_file_kwargs(), **skip)
        return getattr(pipe, name)


def _fp32(module: Any) -> Any:
    """The loaded module in fp32 (the loaders upcast already; this makes sure of it)."""
    import torch

    if any(p.dtype != torch.float32 for p in module.parameters()):
        module = module.to(torch.float32)
    return module.eval()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file", param=path.name) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: not valid JSON ({e})", param=path.name) from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: not a JSON object", param=path.name)
    return data


def _check_diffusers_folder(folder: Path, flag: str) -> None:
    if not (folder / "model_index.json").is_file():
        raise ExportError(
            f"{flag}: '{folder}' is not a diffusers pipeline folder (no model_index.json)",
            param="model_index",
        )
    if not (folder / "unet" / "config.json").is_file():
        raise ExportError(
            f"{flag}: '{folder}' has no UNet (no unet/config.json); w2sd exports UNet "
            "pipelines (SD 1.x/2.x, SDXL)",
            param="unet",
        )


def open_checkpoint(
    role: str, path: Path, config: Path | None, variant: str | None, fallback: Path | None
) -> Checkpoint:
    """Check what `path` is and return its Checkpoint. A single file's config folder is
    `config` (--ROLE-config), else `fallback` (the strong role's config folder)."""
    flag = f"--{role}"
    if not path.exists():
        raise ExportError(f"{flag}: '{path}' does not exist", param=role)
    if path.is_dir():
        if config is not None:
            raise ExportError(
                f"{flag}-config is for a single-file checkpoint; '{path}' is a folder",
                param=f"{role}_config",
            )
        _check_diffusers_folder(path, flag)
        ck = Checkpoint(role, path, path, variant)
        ck.family()  # an unknown pipeline class is refused here
        return ck
    if path.suffix != SINGLE_FILE_SUFFIX:
        raise ExportError(
            f"{flag}: '{path}' is neither a diffusers folder nor a .safetensors single file "
            "(a .ckpt is a pickle: convert it to .safetensors first)",
            param=role,
        )
    arch = single_file_arch(path, need_vae=role == "strong")
    config = config or fallback
    if config is None:
        raise ExportError(
            f"{flag}: '{path}' is a single-file {ARCH_NAMES[arch]} checkpoint; its "
            f"configs are missing: pass {flag}-config FOLDER, a local diffusers folder of "
            "the same architecture (model_index.json, unet/vae/text encoder configs, "
            "tokenizers, scheduler; its weights are not read)",
            param=f"{role}_config",
        )
    _check_diffusers_folder(config, f"{flag}-config")
    ck = Checkpoint(role, path, config, None)
    family = ck.family()
    if family.name != _ARCH_FAMILY[arch]:
        raise ExportError(
            f"{flag}: '{path}' holds {ARCH_NAMES[arch]} weights but its config folder "
            f"'{config}' is a {family.name} pipeline ({family.pipeline})",
            param=f"{role}_config",
        )
    return ck
