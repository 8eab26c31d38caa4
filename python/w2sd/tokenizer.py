"""CLIP tokenisation with the `tokenizers` library, as diffusers' pipelines call it:
pad to max length with the pipeline's pad token, truncate to max length."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import EngineDirError


class ClipTokenizer:
    def __init__(self, path: Path, max_length: int, pad_token_id: int) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises its own Exception type
            raise EngineDirError(f"{path}: cannot load tokenizer ({e})") from None
        self.max_length = max_length
        self._tok.enable_truncation(max_length=max_length)
        self._tok.enable_padding(
            length=max_length,
            pad_id=pad_token_id,
            pad_token=self._tok.id_to_token(pad_token_id) or "",
        )

    def __call__(self, texts: list[str]) -> np.ndarray:
        """texts -> input_ids (len(texts), max_length) int64."""
        encodings = self._tok.encode_batch(texts)
        return np.asarray([e.ids for e in encodings], dtype=np.int64)
