"""Multiply-adds of one UNet call, counted from the ONNX graph with concrete shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _shape(info) -> list[int] | None:  # type: ignore[no-untyped-def]
    dims = info.type.tensor_type.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in dims):
        return None
    return [d.dim_value for d in dims]


def unet_macs(onnx_path: Path, input_shapes: dict[str, list[int]]) -> int:
    """Sum of MACs over Conv, ConvTranspose, MatMul and Gemm nodes for these input shapes.

    Elementwise ops, norms and softmax are left out: they are memory-bound and a
    small share of the arithmetic."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for inp in model.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, input_shapes[inp.name], strict=True):
                d.ClearField("dim_param")
                d.dim_value = v
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int] | None] = {}
    for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        shapes[info.name] = _shape(info)
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            out = shapes.get(node.output[0])
            w = shapes.get(node.input[1])
            if out is None or w is None:
                continue
            # out: (N, Cout, H, W); w: (Cout, Cin/groups, kh, kw)
            macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            out = shapes.get(node.output[0])
            if a is None or b is None or out is None:
                continue
            k = a[-1] if not (node.op_type == "Gemm" and _attr(node, "transA")) else a[-2]
            macs += int(np.prod(out)) * int(k)
    return macs


def _attr(node, name: str) -> int:  # type: ignore[no-untyped-def]
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return 0
