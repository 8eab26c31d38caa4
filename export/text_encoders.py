"""Per-role text conditioning at export (../shared/W2SD-SPEC.md, "Text conditioning").

Each role is conditioned by its own pipeline's text encoder(s) and tokenizer(s).
Identical encoders (same weights, same tokenizer) are exported once; every role
points at an encoder set (SD: one encoder, SDXL: two), and identical sets are
stored once too. A LoRA or condition gap uses one folder, hence one set, encoded
with no LoRA applied (LoRA text-encoder weights are never loaded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2sd.errors import InvalidArgumentError
from w2sd.manifest import ROLES

from . import onnx_export as ox
from .checkpoints import Checkpoint, loading
from .families import Family, TextEncoderSpec


@dataclass
class EncoderSource:
    """One distinct encoder: where it comes from and its tokenizer, serialized."""

    ck: Checkpoint
    spec: TextEncoderSpec
    tokenizer_json: str
    facts: dict[str, Any]  # max_length, pad_token_id, pad_token


@dataclass
class EncoderPlan:
    encoders: list[EncoderSource] = field(default_factory=list)
    # Distinct sets: (encoder indices, force_zeros_for_empty_prompt, source).
    sets: list[tuple[tuple[int, ...], bool, Path]] = field(default_factory=list)
    role_set: dict[str, int] = field(default_factory=dict)


def _load_tokenizer(folder: Path) -> tuple[str, dict[str, Any]]:
    """A CLIP tokenizer as `tokenizers` JSON, with the facts the runtime needs."""
    from transformers import AutoTokenizer

    with loading("the tokenizer", folder, "tokenizer"):
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise InvalidArgumentError(f"{folder}: no fast tokenizer could be built")
    facts = {
        "max_length": int(tok.model_max_length),
        "pad_token_id": int(tok.pad_token_id),
        "pad_token": str(tok.pad_token),
    }
    return backend.to_str(), facts


def plan_text_encoders(
    cks: dict[str, Checkpoint], family: Family, force_zeros: Callable[[Checkpoint], bool]
) -> EncoderPlan:
    """Which distinct encoders and encoder sets the roles need.

    Refuses encoders that cannot condition the same UNet batch: a different token
    length (max_length) than the strong pipeline's first encoder."""
    plan = EncoderPlan()
    digests: dict[tuple[str, Path], list[tuple[str, str]]] = {}
    keys: list[tuple[str, str, str]] = []  # (subfolder, tokenizer hash, weights hash)
    for role in ROLES:
        ck = cks[role]
        members = []
        for spec in family.encoders:
            tokenizer_json, facts = _load_tokenizer(ck.config_dir / spec.tokenizer)
            digest = digests.setdefault((spec.encoder, ck.path.resolve()), ck.digest(spec.encoder))
            key = (
                spec.encoder,
                hashlib.sha256((tokenizer_json + repr(sorted(facts.items()))).encode()).hexdigest(),
                hashlib.sha256(repr(digest).encode()).hexdigest(),
            )
            if key not in keys:
                first = plan.encoders[0].facts if plan.encoders else facts
                if facts["max_length"] != first["max_length"]:
                    raise InvalidArgumentError(
                        f"strong and {role} are incompatible: {spec.tokenizer} field "
                        f"'max_length' differs ({first['max_length']} vs {facts['max_length']})"
                    )
                keys.append(key)
                plan.encoders.append(EncoderSource(ck, spec, tokenizer_json, facts))
            members.append(keys.index(key))
        entry = (tuple(members), force_zeros(ck), ck.path)
        same = [i for i, s in enumerate(plan.sets) if s[:2] == entry[:2]]
        if same:
            plan.role_set[role] = same[0]
        else:
            plan.role_set[role] = len(plan.sets)
            plan.sets.append(entry)
    return plan


def export_text_encoders(
    plan: EncoderPlan,
    out: Path,
    log: Callable[[str], None],
    first_step: int,
    total: int,
    verify: bool,
    record: Callable[[str, ox.Exported], None],
) -> list[dict[str, Any]]:
    """Write ``text_encoder{i}/model.onnx`` and ``tokenizer{i}/tokenizer.json`` for every
    distinct encoder, one at a time (each verified if `verify`, handed to `record`, and
    freed before the next); returns their manifest entries."""
    meta: list[dict[str, Any]] = []
    for i, src in enumerate(plan.encoders):
        spec = src.spec
        log(f"[{first_step + i}/{total}] {spec.encoder} from {src.ck.path} (text encoder {i})")
        tok_rel = f"tokenizer{i}/tokenizer.json"
        (out / tok_rel).parent.mkdir(parents=True, exist_ok=True)
        (out / tok_rel).write_text(src.tokenizer_json, encoding="utf-8")

        def build(src: EncoderSource = src) -> ox.TextEncoderForExport:
            module = src.ck.load_text_encoder(src.spec)
            return ox.TextEncoderForExport(module, src.spec.hidden, src.spec.pooled)

        rel = f"text_encoder{i}/model.onnx"
        component = ox.text_encoder_component(build, src.facts["max_length"], spec.pooled)
        exported = ox.export_component(component, out / rel, verify)
        record(f"text_encoder{i}", exported)
        meta.append(
            {
                "file": rel,
                "tokenizer": tok_rel,
                "outputs": list(component.output_names),
                "hidden_size": exported.facts["hidden_size"],
                "source": str(src.ck.path),
                **src.facts,
            }
        )
    return meta


def encoder_sets_meta(plan: EncoderPlan) -> list[dict[str, Any]]:
    return [
        {"encoders": list(members), "force_zeros_for_empty_prompt": zeros, "source": str(folder)}
        for members, zeros, folder in plan.sets
    ]
