"""Peak memory of exporting one model, measured in a process of its own.

``python tests/export_memory_scenario.py OUT_DIR`` prints one JSON line: the weights'
bytes and how far the process's peak resident memory (VmHWM) rose above its resident
memory just before the export (the libraries are loaded and the peak reset first, so
only the export is measured). The model is a stack of linear layers on 3-D inputs, the
layers whose weights the tracer transposes (MatMul of x and W^T), as in every UNet
attention block.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from export import onnx_export as ox

WIDTH, LAYERS = 1024, 96  # 96 x 4 MiB = 384 MiB of fp32 weights


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class Stack(torch.nn.Module):
    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def component(width: int, layers: int) -> ox.Component:
    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return Stack(width, layers)

    def inputs(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return {"x": torch.randn(2, 8, width, generator=gen)}

    return ox.Component(build, inputs, ("y",), {"x": {0: "batch"}, "y": {0: "batch"}})


def main() -> None:
    out = Path(sys.argv[1])
    # Warm-up: load every library the export touches, then reset the peak.
    ox.export_component(component(64, 2), out / "warm" / "model.onnx")
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    done = ox.export_component(component(WIDTH, LAYERS), out / "big" / "model.onnx")
    peak = status_kib("VmHWM")
    weights = LAYERS * (WIDTH * WIDTH + WIDTH) * 4
    print(
        json.dumps(
            {
                "weights_bytes": weights,
                "peak_rise_bytes": (peak - before) * 1024,
                "check": done.check,
                "data_bytes": (out / "big" / "model.onnx.data").stat().st_size,
            }
        )
    )


if __name__ == "__main__":
    main()
