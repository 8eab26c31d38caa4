"""The engine directory's ``manifest.json``: one typed schema that export writes and the
runtime, the engine builders and the benchmark read.

An engine directory is self-contained and relocatable: every path in the
manifest is relative to the directory, and every artifact has a SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from .errors import EngineDirError

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "w2sd-engine"
# 2: per-role text encoder sets (text.encoder_sets, roles.*.text).
# 3: unfused LoRA with its scale as a UNet input (unets.*.lora.input, roles.*.lora_scale).
# 4: plain ONNX denoisers (family "onnx", `denoiser`; text, image and the VAE optional).
FORMAT_VERSION = 5
READABLE_VERSIONS = (2, 3, 4, 5)  # an older engine dir is a newer one without those fields
ROLES = ("strong", "weak", "denoiser")
Role = Literal["strong", "weak", "denoiser"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    """Sections that carry more facts than the runtime reads (diffusers config, builds)."""

    model_config = ConfigDict(extra="allow", strict=True)


class SchedulerSpec(_Open):
    num_train_timesteps: int
    alphas_cumprod: list[float]
    set_alpha_to_one: bool
    steps_offset: int
    timestep_spacing: str
    prediction_type: Literal["epsilon", "v_prediction"]

    @model_validator(mode="after")
    def _table_length(self) -> SchedulerSpec:
        if len(self.alphas_cumprod) != self.num_train_timesteps:
            raise ValueError(
                f"alphas_cumprod has {len(self.alphas_cumprod)} entries, "
                f"num_train_timesteps is {self.num_train_timesteps}"
            )
        return self


class ImageSpec(_Strict):
    default_height: int
    default_width: int
    min_size: int
    max_size: int
    size_multiple: int


class TextEncoderSpec(_Strict):
    """One distinct text encoder artifact and its tokenizer."""

    file: str
    tokenizer: str
    outputs: list[str]  # hidden states first; "text_embeds" where it gives pooled embeddings
    hidden_size: int
    max_length: int
    pad_token_id: int
    pad_token: str
    source: str  # the diffusers folder it was exported from


class EncoderSet(_Strict):
    """One pipeline's text conditioning: its encoders, hidden states concatenated in
    this order (SD: one encoder, SDXL: two), and its pipeline's empty-prompt rule."""

    encoders: list[int]  # indices into text.encoders
    force_zeros_for_empty_prompt: bool
    source: str


class TextSpec(_Strict):
    encoders: list[TextEncoderSpec]  # every distinct encoder, stored and run once
    encoder_sets: list[EncoderSet]  # every distinct conditioning; roles.*.text indexes it
    text_len: int
    text_dim: int

    @model_validator(mode="after")
    def _sets_in_range(self) -> TextSpec:
        if not self.encoders or not self.encoder_sets:
            raise ValueError("encoders and encoder_sets must not be empty")
        for s in self.encoder_sets:
            if not s.encoders or any(not 0 <= i < len(self.encoders) for i in s.encoders):
                raise ValueError(f"encoder set {s.encoders} does not index encoders")
        return self


class AddedConditions(_Strict):
    pooled_dim: int
    time_ids_dim: int


class LoraInfo(_Strict):
    file: str
    sha256: str
    scale: float | None  # fused at this scale; None when unfused (`input`)
    input: str | None = None  # the UNet input that takes the scale, when unfused

    @model_validator(mode="after")
    def _fused_or_input(self) -> LoraInfo:
        if (self.scale is None) == (self.input is None):
            raise ValueError("a LoRA is either fused (scale) or unfused (input), not both")
        return self


class UnetSpec(_Strict):
    file: str
    source: str
    lora: LoraInfo | None
    roles: list[Role]


class StoredSource(_Strict):
    """How a role's weights were stored where export read them (export upcasts to fp32)."""

    format: Literal["diffusers", "single_file"]
    config: str  # the diffusers folder its configs came from
    variant: str | None  # the weights variant loaded ("fp16"), None: the plain files
    dtype: str  # the dtype most of the UNet's weights were stored in ("float16", ...)


class RoleSpec(_Strict):
    unet: int  # index into unets
    text: int | None  # index into text.encoder_sets; None for an unconditional denoiser
    guidance: float
    # Default LoRA scale when the role's UNet takes it as an input (0: LoRA off), else None.
    lora_scale: float | None = None


class Defaults(_Strict):
    num_inference_steps: int
    reflection_steps: int
    inversion: Literal["official", "exact"]


class IoSpec(_Strict):
    inputs: list[str]
    outputs: list[str]


class FileIoSpec(IoSpec):
    file: str


class VaeDecoderSpec(FileIoSpec):
    # The VAE's config `force_upcast` (diffusers' SDXL pipelines then decode in float32);
    # None in engine dirs from before version 5 (treated as true: engines/fp16.py).
    force_upcast: bool | None = None


class ModelsSpec(_Strict):
    unet: IoSpec
    vae_decoder: VaeDecoderSpec | None  # None: a denoiser engine samples latents only


class DenoiserSpec(_Strict):
    """A plain ONNX denoiser engine (W2SD-SPEC "Models that are not Stable Diffusion"):
    the sample's (C, H, W) as the models declare them, None where any size goes."""

    sample_shape: list[int | None]
    conditional: bool  # takes encoder_hidden_states


class Artifact(_Strict):
    sha256: str
    bytes: int


class BackendBuild(_Open):
    """What ``w2sd build --backend B`` wrote: model name -> file, checksums, build facts."""

    files: dict[str, str]
    artifacts: dict[str, Artifact]


class EngineManifest(_Strict):
    format: Literal["w2sd-engine"]
    version: int
    created_by: str
    family: Literal["sd", "sdxl", "onnx"]
    sources: dict[Role, str]
    stored: dict[Role, StoredSource] | None = None  # None: an ONNX denoiser engine
    scheduler: SchedulerSpec
    latent_channels: int | None  # None: any (a denoiser that takes any channel count)
    vae_scale_factor: int  # 1 for a denoiser engine
    vae_scaling_factor: float
    image: ImageSpec | None  # None: a denoiser engine, sized by its latents
    text: TextSpec | None  # None: an unconditional denoiser
    unet_added_conditions: AddedConditions | None
    unets: list[UnetSpec]
    roles: dict[Role, RoleSpec]
    defaults: Defaults
    models: ModelsSpec
    export_checks: dict[str, float]
    artifacts: dict[str, Artifact]
    backends: dict[str, BackendBuild]
    denoiser: DenoiserSpec | None = None

    @model_validator(mode="after")
    def _roles_in_range(self) -> EngineManifest:
        if (self.family == "onnx") != (self.denoiser is not None):
            raise ValueError("'denoiser' is set exactly for family 'onnx'")
        if self.family != "onnx" and (
            self.text is None or self.image is None or self.models.vae_decoder is None
        ):
            raise ValueError(f"a {self.family} engine needs text, image and models.vae_decoder")
        for role in ROLES:
            spec = self.roles.get(role)  # type: ignore[call-overload]
            if spec is None:
                raise ValueError(f"roles has no '{role}'")
            if not 0 <= spec.unet < len(self.unets):
                raise ValueError(f"roles.{role}.unet={spec.unet} does not index unets")
            if (spec.text is None) != (self.text is None):
                raise ValueError(f"roles.{role}.text must be set exactly when the engine has text")
            if self.text is not None and not 0 <= (spec.text or 0) < len(self.text.encoder_sets):
                raise ValueError(f"roles.{role}.text={spec.text} does not index encoder_sets")
            lora = self.unets[spec.unet].lora
            takes_scale = lora is not None and lora.input is not None
            if takes_scale != (spec.lora_scale is not None):
                raise ValueError(
                    f"roles.{role}.lora_scale must be set exactly when its UNet takes a LoRA scale"
                )
        return self

    def role(self, name: str) -> RoleSpec:
        return self.roles[name]  # type: ignore[index]

    def lora_input(self, role: str) -> str | None:
        """The input name of `role`'s UNet that takes the LoRA scale, or None."""
        lora = self.unets[self.role(role).unet].lora
        return None if lora is None else lora.input

    @property
    def unconditional(self) -> bool:
        """A denoiser engine without text conditioning (no prompt, no guidance)."""
        return self.text is None

    def encoder_set(self, role: str) -> EncoderSet:
        """The text conditioning of `role`: its own pipeline's encoders."""
        index = self.role(role).text
        if self.text is None or index is None:
            raise EngineDirError("this engine is unconditional: it has no text encoders")
        return self.text.encoder_sets[index]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def artifact_entry(root: Path, rel: str) -> dict[str, Any]:
    path = root / rel
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_public(path: Path) -> None:
    """Give a mkstemp/mkdtemp result the permissions a plain open/mkdir would have."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        make_public(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(root: Path, spec: EngineManifest) -> None:
    write_json_atomic(root / MANIFEST_NAME, spec.model_dump(mode="json"))


@dataclass
class Manifest:
    """A validated manifest and the engine directory it belongs to."""

    root: Path
    spec: EngineManifest

    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def backends(self) -> dict[str, BackendBuild]:
        return self.spec.backends

    def record_build(self, backend: str, entry: dict[str, Any]) -> BackendBuild:
        """Validate a build entry, store it and save the manifest (atomically)."""
        build = BackendBuild.model_validate(entry)
        self.spec.backends[backend] = build
        self.save()
        return build

    def save(self) -> None:
        write_manifest(self.root, self.spec)

    def verify(self, rels: list[str], full: bool = True) -> None:
        """Check that each artifact exists with its recorded size (and SHA-256 if ``full``;
        a file unchanged since its hash last matched is not hashed again: ``verified``)."""
        from .verified import VerifiedFiles

        table = dict(self.spec.artifacts)
        for backend in self.backends.values():
            table.update(backend.artifacts)
        hashed = VerifiedFiles() if full else None
        for rel in rels:
            entry = table.get(rel)
            if entry is None:
                raise EngineDirError(f"{self.root}: manifest has no checksum for artifact '{rel}'")
            path = self.root / rel
            if not path.is_file():
                raise EngineDirError(f"{self.root}: artifact '{rel}' is missing")
            st = path.stat()
            if st.st_size != entry.bytes:
                raise EngineDirError(
                    f"{self.root}: artifact '{rel}' has {st.st_size} bytes, manifest says "
                    f"{entry.bytes} (truncated or replaced?)"
                )
            if hashed is None or hashed.vouches(path, st, entry.sha256):
                continue
            if sha256_file(path) != entry.sha256:
                raise EngineDirError(
                    f"{self.root}: checksum mismatch for artifact '{rel}' (corrupt or modified)"
                )
            hashed.add(path, st, entry.sha256)
        if hashed is not None:
            hashed.save()


def _describe(error: ValidationError) -> str:
    """The first schema violation, named by its dotted field path."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "missing":
        return f"missing field '{where}'"
    if not where:
        return first["msg"].removeprefix("Value error, ")
    return f"field '{where}': {first['msg'].removeprefix('Value error, ')}"


def load_manifest(engine_dir: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``engine_dir/manifest.json``; raise EngineDirError naming the problem."""
    root = Path(engine_dir)
    if not root.exists():
        raise EngineDirError(f"engine dir '{root}' does not exist")
    if not root.is_dir():
        raise EngineDirError(f"engine dir '{root}' is not a directory")
    path = root / MANIFEST_NAME
    if not path.is_file():
        hint = " (the directory is empty)" if not any(root.iterdir()) else ""
        raise EngineDirError(
            f"'{root}' is not an engine dir: no {MANIFEST_NAME}{hint}; create one with "
            f"`w2sd export --strong MODEL --weak MODEL --out {root}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EngineDirError(f"{path}: corrupt manifest (not valid JSON: {e})") from None
    if not isinstance(data, dict):
        raise EngineDirError(f"{path}: corrupt manifest (top level is not an object)")
    if data.get("format") != FORMAT_NAME:
        raise EngineDirError(f"{path}: not a w2sd engine manifest (format={data.get('format')!r})")
    if data.get("version") not in READABLE_VERSIONS:
        raise EngineDirError(
            f"{path}: manifest version {data.get('version')!r} is not supported by this w2sd "
            f"(reads {', '.join(map(str, READABLE_VERSIONS))}); re-export the engine dir"
        )
    try:
        spec = EngineManifest.model_validate(data)
    except ValidationError as e:
        raise EngineDirError(f"{path}: corrupt manifest ({_describe(e)})") from None
    return Manifest(root=root, spec=spec)
