"""A small Python client for ``w2sd serve`` (needs ``httpx``: ``w2sd-runtime[serve]``).

    from .client import W2SDClient
    client = W2SDClient("http://127.0.0.1:8000")
    result = client.generate("a red bicycle", seed=7, reflection_steps=12)
    result.images[0].save("out.png")

Any OpenAI Images API client works too (``base_url=".../v1"``); this one adds the W2SD
fields as keywords, streaming progress, and typed errors.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from w2sd.errors import InvalidArgumentError, W2SDError


class ServerError(W2SDError):
    """The server answered with an error status (``status``, ``param`` as it said)."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.param = param


@dataclass(frozen=True)
class Generation:
    png: list[bytes]
    w2sd: dict[str, Any]  # seed, unet_calls, size, timings

    @property
    def images(self) -> list[Any]:
        from PIL import Image

        return [Image.open(io.BytesIO(b)) for b in self.png]


class W2SDClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 600.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> W2SDClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> bool:
        return self._http.get("/ready").status_code == 200

    @staticmethod
    def _body(prompt: str, n: int, size: str | None, fields: dict[str, Any]) -> dict[str, Any]:
        body = {"prompt": prompt, "n": n, "response_format": "b64_json", **fields}
        if size is not None:
            body["size"] = size
        return body

    @staticmethod
    def _result(payload: dict[str, Any]) -> Generation:
        return Generation(
            [base64.b64decode(d["b64_json"]) for d in payload["data"]], payload["w2sd"]
        )

    @staticmethod
    def _raise(status: int, payload: dict[str, Any]) -> None:
        err = payload.get("error", {})
        message, param = err.get("message", str(payload)), err.get("param")
        if status == 400:
            raise InvalidArgumentError(message, param=param)
        raise ServerError(status, message, param)

    def generate(
        self, prompt: str, *, n: int = 1, size: str | None = None, **fields: Any
    ) -> Generation:
        """One request; ``fields`` are W2SD fields (seed, reflection_steps, ...)."""
        r = self._http.post("/v1/images/generations", json=self._body(prompt, n, size, fields))
        payload = r.json()
        if r.status_code != 200:
            self._raise(r.status_code, payload)
        return self._result(payload)

    def stream(
        self,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        **fields: Any,
    ) -> Generation:
        """Like ``generate``, with ``on_progress(step, total)`` called as steps finish."""
        body = self._body(prompt, n, size, fields) | {"stream": True}
        with self._http.stream("POST", "/v1/images/generations", json=body) as r:
            if r.status_code != 200:
                r.read()
                self._raise(r.status_code, r.json())
            for event, data in _sse(r.iter_lines()):
                if event == "progress" and on_progress is not None:
                    on_progress(data["step"], data["total"])
                elif event == "result":
                    return self._result(data)
                elif event == "error":
                    self._raise(data.get("status", 500), data)
        raise ServerError(502, "the stream ended without a result")


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    event = "message"
    for line in lines:
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            yield event, json.loads(line.removeprefix("data:").strip())
            event = "message"
