"""Baseline "ort-python": the W2SD loop a user could write in an afternoon with ONNX
Runtime's Python API and numpy, over the same exported ONNX models (not the C++ core)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from w2sd.manifest import ROLES, load_manifest
from w2sd.tokenizer import ClipTokenizer


class OrtPythonW2SD:
    """`open_model(name, exported_file)` -> an object with ONNX Runtime's ``run(None, feed)``
    for each model ("unet0", "text_encoder0", "vae_decoder"); None: ONNX Runtime sessions on
    the exported models."""

    def __init__(
        self,
        engine_dir: str | Path,
        backend: str = "cpu",
        open_model: Callable[[str, str], Any] | None = None,
    ) -> None:
        self.m = load_manifest(engine_dir)
        spec = self.spec = self.m.spec
        session = open_model or self._ort_sessions(backend)
        self.unets = [session(f"unet{i}", u.file) for i, u in enumerate(spec.unets)]
        self.encoders = [
            session(f"text_encoder{i}", e.file) for i, e in enumerate(spec.text.encoders)
        ]
        self.tokenizers = [
            ClipTokenizer(self.m.path(e.tokenizer), e.max_length, e.pad_token_id)
            for e in spec.text.encoders
        ]
        self.vae = session("vae_decoder", spec.models.vae_decoder.file)
        self.alphas = np.asarray(spec.scheduler.alphas_cumprod, dtype=np.float32)

    def _ort_sessions(self, backend: str) -> Callable[[str, str], Any]:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # The afternoon loop uses ONNX Runtime's own CPU kernels next to the openvino backend.
        providers = {
            "cpu": ["CPUExecutionProvider"],
            "openvino": ["CPUExecutionProvider"],
            "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
        }[backend]

        def session(_name: str, rel: str) -> Any:
            return ort.InferenceSession(str(self.m.path(rel)), opts, providers=providers)

        return session

    def _encode(self, role: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """`role`'s own pipeline's encoder(s); zeros for "" where that pipeline says so."""
        hidden, pooled = [], None
        encoder_set = self.spec.encoder_set(role)
        for i in encoder_set.encoders:
            outs = self.encoders[i].run(None, {"input_ids": self.tokenizers[i](texts)})
            hidden.append(outs[0])
            if len(outs) > 1:
                pooled = outs[1]
        states = np.concatenate(hidden, axis=-1)
        if encoder_set.force_zeros_for_empty_prompt and texts == [""]:
            return np.zeros_like(states), None if pooled is None else np.zeros_like(pooled)
        return states, pooled

    def _timesteps(self, steps: int) -> tuple[list[int], int]:
        s = self.spec.scheduler
        n = s.num_train_timesteps
        if s.timestep_spacing != "leading":
            raise NotImplementedError("this baseline only implements leading spacing")
        delta = n // steps
        return [i * delta + s.steps_offset for i in range(steps)][::-1], delta

    def _alpha(self, t: int) -> np.float32:
        if t >= 0:
            return self.alphas[t]
        return np.float32(1.0) if self.spec.scheduler.set_alpha_to_one else self.alphas[0]

    def _update(
        self, e: np.ndarray, x: np.ndarray, a: np.float32, a_next: np.float32
    ) -> np.ndarray:
        if self.spec.scheduler.prediction_type == "epsilon":
            x0 = (x - np.sqrt(1 - a) * e) / np.sqrt(a)
            eps = e
        else:
            x0 = np.sqrt(a) * x - np.sqrt(1 - a) * e
            eps = np.sqrt(a) * e + np.sqrt(1 - a) * x
        return np.sqrt(a_next) * x0 + np.sqrt(1 - a_next) * eps

    def sample(
        self,
        prompt: str,
        latents: np.ndarray,
        steps: int,
        reflection_steps: int,
        guidance: dict[str, float],
        inversion: str = "official",
    ) -> dict[str, Any]:
        import time

        spec = self.spec
        t0 = time.perf_counter()
        text = {}
        for s in sorted({spec.role(r).text for r in ROLES}):
            role = next(r for r in ROLES if spec.role(r).text == s)
            text[s] = (*self._encode(role, [prompt]), *self._encode(role, [""]))
        t_text = time.perf_counter() - t0
        f = spec.vae_scale_factor
        h, w = latents.shape[2] * f, latents.shape[3] * f
        ids = np.array([[h, w, 0, 0, h, w]], dtype=np.float32)
        n_train = spec.scheduler.num_train_timesteps

        def predict(role: str, x: np.ndarray, t: int) -> np.ndarray:
            g = guidance[role]
            cond, pooled, uncond, uncond_pooled = text[spec.role(role).text]
            sess = self.unets[spec.role(role).unet]
            feed = {"timestep": np.array([t], dtype=np.float32)}
            if g == 1.0:
                feed.update(sample=x, encoder_hidden_states=cond)
                if pooled is not None:
                    feed.update(text_embeds=pooled, time_ids=ids)
                return sess.run(None, feed)[0]
            feed.update(
                sample=np.concatenate([x, x]), encoder_hidden_states=np.concatenate([uncond, cond])
            )
            if pooled is not None:
                feed.update(
                    text_embeds=np.concatenate([uncond_pooled, pooled]),
                    time_ids=np.concatenate([ids, ids]),
                )
            e_u, e_c = np.split(sess.run(None, feed)[0], 2)
            return e_u + np.float32(g) * (e_c - e_u)

        timesteps, delta = self._timesteps(steps)
        x = latents.copy()
        t0 = time.perf_counter()
        calls = 0
        for i, t in enumerate(timesteps):
            if i < reflection_steps:
                x_s = self._update(
                    predict("strong", x, t), x, self._alpha(t), self._alpha(t - delta)
                )
                t_inv = timesteps[i + 1] if inversion == "official" else t
                q = min(t_inv - delta, n_train - 1)
                x = self._update(predict("weak", x_s, t), x_s, self._alpha(q), self._alpha(t_inv))
                calls += 2
            x = self._update(predict("denoiser", x, t), x, self._alpha(t), self._alpha(t - delta))
            calls += 1
        t_loop = time.perf_counter() - t0
        t0 = time.perf_counter()
        image = self.vae.run(None, {"latent_sample": x / np.float32(spec.vae_scaling_factor)})[0]
        t_vae = time.perf_counter() - t0
        return {
            "latents": x,
            "image": image,
            "unet_calls": calls,
            "stages_s": {"text_encode": t_text, "loop": t_loop, "vae_decode": t_vae},
        }


__all__ = ["OrtPythonW2SD", "ROLES"]
