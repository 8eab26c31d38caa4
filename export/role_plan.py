"""What the three roles share at export: the facts every role must agree on (scheduler,
UNet, text encoder and VAE configs) and which roles share one UNet artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from w2sd.errors import InvalidArgumentError
from w2sd.manifest import ROLES, sha256_file

from .checkpoints import Checkpoint
from .common import scheduler_section
from .families import Family
from .lora import LoraSpec

_SCHEDULER_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "set_alpha_to_one",
    "steps_offset",
    "prediction_type",
    "timestep_spacing",
    "rescale_betas_zero_snr",
)
_UNET_KEYS = (
    "in_channels",
    "out_channels",
    "cross_attention_dim",
    "addition_embed_type",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
)
_TEXT_KEYS = ("hidden_size", "projection_dim", "max_position_embeddings")


def _check_same(
    role: str, what: str, ref: dict[str, Any], other: dict[str, Any], keys: tuple[str, ...]
) -> None:
    """Raise naming the first field where `role`'s config differs from the strong one."""
    for key in keys:
        if ref.get(key) != other.get(key):
            raise InvalidArgumentError(
                f"strong and {role} are incompatible: {what} field '{key}' differs "
                f"({ref.get(key)!r} vs {other.get(key)!r})"
            )


def same_weights(a: Checkpoint, b: Checkpoint, sub: str) -> bool:
    """True when two roles hold byte-identical weights for `sub`."""
    if a.same_as(b):
        return True
    fa, fb = a.files(sub), b.files(sub)
    if not a.single_file and not b.single_file and [p.name for p in fa] != [p.name for p in fb]:
        return False
    if len(fa) != len(fb):
        return False
    if any(x.stat().st_size != y.stat().st_size for x, y in zip(fa, fb, strict=True)):
        return False
    return all(sha256_file(x) == sha256_file(y) for x, y in zip(fa, fb, strict=True))


def scheduler_config(ck: Checkpoint) -> dict[str, Any]:
    """DDIMScheduler built from the role's scheduler_config, plus its ᾱ table."""
    from diffusers import DDIMScheduler

    config = DDIMScheduler.from_pretrained(
        ck.config_dir, subfolder="scheduler", local_files_only=True
    ).config
    return scheduler_section(config)


def check_roles_compatible(cks: dict[str, Checkpoint], family: Family) -> dict[str, Any]:
    """Scheduler, UNet, text encoder and VAE facts that every role must share."""
    strong = cks["strong"]
    scheduler = scheduler_config(strong)
    ref_unet = strong.config("unet")
    for role in ("weak", "denoiser"):
        ck = cks[role]
        if ck.same_as(strong):
            continue
        other_family = ck.family()
        if other_family.name != family.name:
            raise InvalidArgumentError(
                f"strong and {role} are incompatible: model family differs "
                f"({family.name} vs {other_family.name})"
            )
        if (ck.config_dir / "scheduler").is_dir():
            _check_same(role, "scheduler_config", scheduler, scheduler_config(ck), _SCHEDULER_KEYS)
        _check_same(role, "unet config", ref_unet, ck.config("unet"), _UNET_KEYS)
        for enc in family.encoders:
            if ck.has_config(enc.encoder):
                _check_same(
                    role,
                    f"{enc.encoder} config",
                    strong.config(enc.encoder),
                    ck.config(enc.encoder),
                    _TEXT_KEYS,
                )
        if ck.has_config("vae"):
            _check_same(
                role, "vae config", strong.config("vae"), ck.config("vae"), ("latent_channels",)
            )
    return scheduler


LORA_MODES = ("input", "fused")


@dataclass
class UnetGroup:
    """One UNet artifact: its base weights (the first role's), LoRA and roles."""

    first: str
    lora: LoraSpec | None
    roles: list[str] = field(default_factory=list)


def lora_scale(spec: LoraSpec | None) -> float:
    return 0.0 if spec is None else spec.scale


def _same_lora_file(a: LoraSpec, b: LoraSpec) -> bool:
    return a.path.resolve() == b.path.resolve() or sha256_file(a.path) == sha256_file(b.path)


def unet_groups(
    cks: dict[str, Checkpoint], loras: dict[str, LoraSpec | None], mode: str
) -> tuple[list[UnetGroup], dict[str, int]]:
    """Distinct UNet artifacts and each role's index.

    fused: roles share an artifact when weights, LoRA file and scale all match.
    input: roles share one when their base weights match and they use the same LoRA file
    or none (a role without the LoRA runs the branch at scale 0, which adds exact zeros)."""
    groups: list[UnetGroup] = []
    role_unet: dict[str, int] = {}
    for role in ROLES:
        mine = loras[role]
        for idx, g in enumerate(groups):
            theirs = g.lora
            if mode == "fused":
                fits = (mine is None and theirs is None) or (
                    mine is not None
                    and theirs is not None
                    and mine.scale == theirs.scale
                    and _same_lora_file(mine, theirs)
                )
            else:
                fits = mine is None or theirs is None or _same_lora_file(mine, theirs)
            if fits and same_weights(cks[g.first], cks[role], "unet"):
                if g.lora is None:
                    g.lora = mine
                g.roles.append(role)
                role_unet[role] = idx
                break
        else:
            role_unet[role] = len(groups)
            groups.append(UnetGroup(role, mine, [role]))
    return groups, role_unet
