"""Text conditioning per role (../shared/W2SD-SPEC.md, "Text conditioning").

Each role is conditioned by its own pipeline's text encoder(s): the manifest maps
every role to an encoder set, and identical encoders are stored and run once. A
request runs each distinct encoder set once over the unique texts of the roles
that use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .manifest import ROLES, Manifest
from .native import core, typed
from .request import ResolvedRequest
from .tokenizer import ClipTokenizer


class TextConditioner:
    def __init__(self, manifest: Manifest, engine: Any) -> None:
        self._spec = manifest.spec
        self._engine = engine  # the core's Engine: encode_text(encoder, ids)
        encoders = self._spec.text.encoders if self._spec.text is not None else []
        self._tokenizers = [
            ClipTokenizer(manifest.path(e.tokenizer), e.max_length, e.pad_token_id)
            for e in encoders
        ]
        self._added = self._spec.unet_added_conditions is not None

    def encode(self, encoder_set: int, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Texts -> (hidden states (N, L, D), pooled embeddings (N, P) or None) with one
        encoder set: SD 1.x/2.x the encoder's last hidden state; SDXL both encoders'
        penultimate hidden states concatenated, pooled from encoder 2."""
        text = self._spec.text
        assert text is not None, "callers check for unconditional engines"
        hidden = []
        pooled = None
        for i in text.encoder_sets[encoder_set].encoders:
            enc = text.encoders[i]
            outputs = self._engine.encode_text(i, self._tokenizers[i](texts))
            hidden.append(outputs[0])
            if "text_embeds" in enc.outputs:
                pooled = outputs[enc.outputs.index("text_embeds")]
        return np.concatenate(hidden, axis=-1) if len(hidden) > 1 else hidden[0], pooled

    def roles(self, plan: ResolvedRequest) -> list[Any]:
        """Per-role conditioning for the core (RoleConditioning: strong, weak, denoiser).

        Unconditional: the role's negative prompt, else "" or, when the role's pipeline
        sets force_zeros_for_empty_prompt (SDXL base), zeros, as diffusers does. An
        unconditional denoiser gets no conditioning (and guidance 1)."""
        spec = self._spec
        if spec.text is None:
            return [_role(unet=spec.role(r).unet, guidance=1.0) for r in ROLES]
        # Unique texts per encoder set, in first-seen order.
        texts: dict[int, dict[str, int]] = {}
        uncond_texts: dict[str, list[str] | None] = {}
        for role in ROLES:
            set_index = spec.role(role).text
            table = texts.setdefault(set_index, {})
            uncond = None
            if plan.guidance[role] != 1.0:
                uncond = plan.negative_prompts[role]
                if (
                    uncond is None
                    and not spec.text.encoder_sets[set_index].force_zeros_for_empty_prompt
                ):
                    uncond = [""] * plan.batch
            uncond_texts[role] = uncond
            for t in plan.prompts[role] + (uncond or []):
                table.setdefault(t, len(table))
        encoded = {s: self.encode(s, list(table)) for s, table in texts.items()}

        time_ids = None
        if self._added:
            # (orig_h, orig_w, crop_top, crop_left, target_h, target_w), diffusers' defaults
            row = np.array([plan.height, plan.width, 0, 0, plan.height, plan.width], np.float32)
            time_ids = np.ascontiguousarray(np.broadcast_to(row, (plan.batch, 6)))

        result = []
        for role in ROLES:
            set_index = spec.role(role).text
            hidden, pooled = encoded[set_index]
            index = texts[set_index]

            def rows(ts: list[str], table: np.ndarray | None) -> np.ndarray | None:
                if table is None:
                    return None
                return np.ascontiguousarray(table[[index[t] for t in ts]])  # noqa: B023

            g = plan.guidance[role]
            entry: dict[str, Any] = {
                "cond": rows(plan.prompts[role], hidden),
                "cond_pooled": rows(plan.prompts[role], pooled) if self._added else None,
                "time_ids": time_ids,
            }
            if g != 1.0:
                uncond = uncond_texts[role]
                if uncond is None:  # force_zeros_for_empty_prompt
                    entry["uncond"] = np.zeros_like(entry["cond"])
                    entry["uncond_pooled"] = (
                        np.zeros_like(entry["cond_pooled"]) if self._added else None
                    )
                else:
                    entry["uncond"] = rows(uncond, hidden)
                    entry["uncond_pooled"] = rows(uncond, pooled) if self._added else None
            lora = plan.lora_scales[role]
            result.append(
                _role(
                    unet=spec.role(role).unet,
                    guidance=g,
                    lora_scale=0.0 if lora is None else lora,  # None: LoRA off
                    **entry,
                )
            )
        return result


def _role(**fields: Any) -> Any:
    """The core's RoleConditioning (arrays left out: unused)."""
    return typed(core().RoleConditioning, **fields)
