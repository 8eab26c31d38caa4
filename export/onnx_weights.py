"""An exported graph written to disk: constant folding of the tracer's small constants and
of the weight transposes it leaves, and the external weights file (page-aligned tensors,
one at a time, straight from the module's parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

OPSET = 17
DATA_SUFFIX = ".data"

# External tensors start on page boundaries so that ONNX Runtime can map them.
_ALIGN = 4096
_EMBED_BELOW = 1024  # bytes; smaller tensors stay inside the model file


def _foldable_transposes(graph: Any, weights: set[str]) -> dict[str, tuple[str, list[int]]]:
    """Transpose nodes whose input is a weight read by nothing else:
    weight name -> (the node's output name, perm)."""
    from onnx import helper

    outputs = {o.name for o in graph.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    folds = {}
    for node in graph.node:
        src = node.input[0] if node.input else ""
        if (
            node.op_type == "Transpose"
            and src in weights
            and readers[src] == 1
            and src not in outputs
            and node.output[0] not in outputs
        ):
            perm = [int(a) for a in helper.get_attribute_value(node.attribute[0])]
            folds[src] = (node.output[0], perm)
    return folds


_NOT_FOLDED = {
    "If",
    "Loop",
    "Scan",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
}


def fold_constants(graph: Any) -> int:
    """Replace every node whose inputs are all Constant nodes by Constant nodes of its
    results (what the tracer's constant folding does for the small constants: attention
    scales and the like; weights are not touched). Without this the OpenVINO EP leaves
    such nodes to ONNX Runtime's CPU EP and splits the graph around them. Returns the
    number of nodes folded."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    values: dict[str, np.ndarray] = {}
    opset = [helper.make_opsetid("", OPSET)]
    kept, folded = [], 0
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and len(node.attribute) == 1
            and node.attribute[0].name == "value"
        ):
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            kept.append(node)
            continue
        inputs = [i for i in node.input if i]
        if node.op_type in _NOT_FOLDED or not inputs or not all(i in values for i in inputs):
            kept.append(node)
            continue
        single = helper.make_model(
            helper.make_graph(
                [node],
                "fold",
                [
                    helper.make_tensor_value_info(
                        i, helper.np_dtype_to_tensor_dtype(values[i].dtype), values[i].shape
                    )
                    for i in inputs
                ],
                [helper.make_tensor_value_info(o, 0, None) for o in node.output],
            ),
            opset_imports=opset,
        )
        try:
            results = ReferenceEvaluator(single).run(None, {i: values[i] for i in inputs})
        except Exception:  # an op the evaluator lacks: leave it to the runtime
            kept.append(node)
            continue
        for name, value in zip(node.output, results, strict=True):
            value = np.asarray(value)
            values[name] = value
            kept.append(
                helper.make_node(
                    "Constant",
                    [],
                    [name],
                    name=f"{node.name}/folded",
                    value=numpy_helper.from_array(value, name),
                )
            )
        folded += 1
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    kept = [n for n in kept if n.op_type != "Constant" or any(o in used for o in n.output)]
    del graph.node[:]
    graph.node.extend(kept)
    return folded


def write_weights(
    model: Any, tensors: dict[str, torch.Tensor], n_inputs: int, out_path: Path
) -> None:
    """Turn a weightless traced model's parameter inputs (every graph input after the
    first `n_inputs`) into initializers stored in ``out_path.data``, one tensor at a time,
    straight from `tensors`; save the model as ``out_path``.

    Weight transposes (a Transpose of a weight no other node reads) are folded into the
    stored tensor, as constant folding would; every other node is kept as traced."""
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    params = [i.name for i in graph.input[n_inputs:]]
    missing = [name for name in params if name not in tensors]
    if missing:
        raise RuntimeError(f"traced parameter inputs not found in the module: {missing[:5]}")
    folds = _foldable_transposes(graph, set(params))
    folded_outputs = {out for out, _ in folds.values()}
    kept_nodes = [
        n for n in graph.node if not (n.op_type == "Transpose" and n.output[0] in folded_outputs)
    ]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    fold_constants(graph)
    user_inputs = list(graph.input[:n_inputs])
    del graph.input[:]
    graph.input.extend(user_inputs)
    data_name = out_path.name + DATA_SUFFIX
    offset = 0
    with (out_path.parent / data_name).open("wb") as data:
        for source in params:
            array = tensors[source].detach().numpy()  # the module's memory, not a copy
            name = source
            if source in folds:
                name, perm = folds[source]
                array = np.ascontiguousarray(array.transpose(perm))
            if array.nbytes < _EMBED_BELOW:
                graph.initializer.append(numpy_helper.from_array(array, name))
                continue
            stored = TensorProto(name=name, data_type=_onnx_dtype(array), dims=array.shape)
            offset += data.write(b"\0" * (-offset % _ALIGN))
            np.ascontiguousarray(array).tofile(data)
            stored.data_location = TensorProto.EXTERNAL
            for key, value in (
                ("location", data_name),
                ("offset", str(offset)),
                ("length", str(array.nbytes)),
            ):
                entry = stored.external_data.add()
                entry.key, entry.value = key, value
            offset += array.nbytes
            graph.initializer.append(stored)
            del array
    onnx.save_model(model, str(out_path))


def _onnx_dtype(array: np.ndarray) -> int:
    from onnx import helper

    return int(helper.np_dtype_to_tensor_dtype(array.dtype))
