"""fp16 models for the CUDA backend, with the parts that must stay float32 kept float32.

``convert_float_to_float16`` turns every float tensor to fp16, and every ``Cast(to=FLOAT)``
into a cast to fp16, so an exported graph's fp32 regions disappear. Two regions of a
diffusion UNet do not survive fp16:

- the sinusoidal embeddings of the timestep (and SDXL's micro-conditioning ``time_ids``):
  ``sin(t * f)`` with t up to 999 (time ids up to 1024+) needs the argument to better
  than fp16's 0.5 spacing at those magnitudes; diffusers computes them in float32;
- attention scores and their softmax: ``QK^T`` overflows fp16 on large models (the reason
  for diffusers' ``upcast_attention`` in SD 2.x and ``upcast_softmax`` everywhere).

Both are found in the graph by structure, not by name, so any exporter's UNet works: every
node reached from the ``timestep`` / ``time_ids`` inputs before the first MatMul/Gemm/Conv
(the embedding's linear layer), and every Softmax with the elementwise chain back to the
MatMul that produced its input (that MatMul included). Those nodes stay float32; the
converter inserts the casts at their borders. The VAE decoder stays float32 entirely when
the pipeline says it must (``vae_keeps_fp32``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from w2sd.manifest import Manifest

from .common import model_sources

# Inputs whose sinusoidal embeddings stay float32.
EMBEDDED_INPUTS = ("timestep", "time_ids")
# Where an embedding ends: its first learned linear layer (which runs in fp16).
LINEAR_OPS = ("MatMul", "Gemm", "Conv")
# What may sit between the scores MatMul and the Softmax (scale, mask, casts, reshapes).
SCORE_CHAIN_OPS = ("Mul", "Div", "Add", "Sub", "Where", "Cast", "Reshape", "Transpose")


def _name_nodes(graph: Any) -> None:
    """Give every unnamed node a unique name (the block list is by name)."""
    used = {n.name for n in graph.node if n.name}
    for i, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_w2sd_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def embedding_nodes(graph: Any) -> set[str]:
    """Nodes computing the sinusoidal embeddings of EMBEDDED_INPUTS, up to (not including)
    the first linear layer on each path."""
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for t in node.input:
            consumers[t].append(node)
    inputs = {i.name for i in graph.input}
    frontier = [name for name in EMBEDDED_INPUTS if name in inputs]
    seen: set[str] = set()
    while frontier:
        tensor = frontier.pop()
        for node in consumers.get(tensor, []):
            if node.op_type in LINEAR_OPS or node.name in seen:
                continue
            seen.add(node.name)
            frontier.extend(node.output)
    return seen


def attention_score_nodes(graph: Any) -> set[str]:
    """Every Softmax, with the chain of SCORE_CHAIN_OPS back to the MatMul producing its
    input (QK^T), that MatMul included."""
    producer = {t: n for n in graph.node for t in n.output}
    keep: set[str] = set()
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        keep.add(node.name)
        current = producer.get(node.input[0])
        while current is not None and current.name not in keep:
            if current.op_type == "MatMul":
                keep.add(current.name)
                break
            if current.op_type not in SCORE_CHAIN_OPS:
                break
            keep.add(current.name)
            # Follow the data input (a scale or mask may come from a Constant).
            current = next(
                (
                    producer[t]
                    for t in current.input
                    if t in producer and producer[t].op_type != "Constant"
                ),
                None,
            )
    return keep


def fp32_nodes(graph: Any) -> set[str]:
    """The nodes ``convert_fp16`` keeps in float32 (names; unnamed nodes get names)."""
    _name_nodes(graph)
    return embedding_nodes(graph) | attention_score_nodes(graph)


def drop_fp16_round_trips(graph: Any) -> int:
    """Remove the converter's float32 -> float16 -> float32 cast pairs.

    The converter gives every float tensor an fp16 type, so between two kept-fp32 nodes it
    inserts ``Cast(to=FLOAT16)`` then ``Cast(to=FLOAT)``: the fp32 region would still be
    rounded to fp16 (and overflow) at every edge. Each ``Cast(to=FLOAT)`` of a
    ``Cast(to=FLOAT16)`` of a float32 tensor is replaced by that tensor; casts left with no
    consumer are removed. Returns how many round trips were removed."""
    from onnx import TensorProto

    def cast_to(node: Any) -> int | None:
        if node.op_type != "Cast":
            return None
        return next((a.i for a in node.attribute if a.name == "to"), None)

    # Float32 tensors in the converted graph: float graph inputs (kept by keep_io_types)
    # and the outputs of kept-fp32 nodes (the converter renames them "<name>_cast_to_fp16").
    fp32 = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    producer = {t: n for n in graph.node for t in n.output}
    outputs = {o.name for o in graph.output}
    replace: dict[str, str] = {}
    for node in graph.node:
        if cast_to(node) != TensorProto.FLOAT or node.output[0] in outputs:
            continue
        down = producer.get(node.input[0])
        if down is None or cast_to(down) != TensorProto.FLOAT16:
            continue
        source = down.input[0]
        if source in fp32 or source.endswith("_cast_to_fp16"):
            replace[node.output[0]] = source
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in replace:
                node.input[i] = replace[name]
    used = {t for n in graph.node for t in n.input} | outputs
    dead = [n for n in graph.node if n.op_type == "Cast" and not set(n.output) & used]
    while dead:
        for n in dead:
            graph.node.remove(n)
        used = {t for n in graph.node for t in n.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and not set(n.output) & used]
    return len(replace)


def vae_keeps_fp32(family: str, force_upcast: bool | None) -> bool:
    """SDXL's VAE overflows fp16 (NaN / black images): diffusers' SDXL pipelines run it in
    float32 when its config says ``force_upcast`` (true unless set false, e.g. the
    fp16-fixed VAE), as ONNX Runtime's own SD optimiser does for every SDXL VAE."""
    return family == "sdxl" and force_upcast is not False


def _save(model: Any, dst: Path) -> None:
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model,
        str(dst),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=dst.name + ".data",
        size_threshold=1024,
    )


def with_value_types(src: Path) -> Any:
    """`src` loaded with every intermediate tensor's type inferred (``value_info``).

    The converter decides where a kept-fp32 node needs casts from those types: without
    them, a float32 node is left reading fp16 tensors (an SD 1.5 UNet's ``time_proj`` Mul:
    "bound to different types"). Inference runs before the weights are loaded, so the
    proto stays far below protobuf's 2 GB limit for any UNet (the converter's own
    inference serializes the whole model and cannot run past it)."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    if any(n.domain == "com.microsoft" for n in model.graph.node):
        # ONNX Runtime's fused operators: only its own shape inference knows them.
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    else:
        model = onnx.shape_inference.infer_shapes(model)
    onnx.load_external_data_for_model(model, str(src.parent))
    return model


# ONNX Runtime's fused attention operators (sd_fusion.py).
FUSED_ATTENTION_OPS = ["MultiHeadAttention", "Attention"]


def convert_fp16(src: Path, dst: Path, fp32_attention: bool = False) -> int:
    """Write `src` with fp16 weights and arithmetic (float32 inputs and outputs) to `dst`,
    keeping ``fp32_nodes`` (and, with `fp32_attention`, fused attention operators) in
    float32; returns how many nodes were kept."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = with_value_types(src)
    keep = fp32_nodes(model.graph)
    attention = FUSED_ATTENTION_OPS if fp32_attention else []
    blocked = list(DEFAULT_OP_BLOCK_LIST) + attention
    keep |= {n.name for n in model.graph.node if n.op_type in attention}
    model16 = convert_float_to_float16(
        model,
        keep_io_types=True,
        disable_shape_infer=True,  # done above, on any size
        op_block_list=blocked,
        node_block_list=sorted(keep),
    )
    drop_fp16_round_trips(model16.graph)
    _save(model16, dst)
    return len(keep)


def copy_fp32(src: Path, dst: Path) -> int:
    """Write `src` unchanged (float32) to `dst`'s layout; returns 0 nodes converted."""
    import onnx

    _save(onnx.load(str(src), load_external_data=True), dst)
    return 0


def model_precisions(manifest: Manifest) -> dict[str, str]:
    """name -> "fp16" or "fp32" for every model this backend builds."""
    spec = manifest.spec
    vae = spec.models.vae_decoder
    vae_fp32 = vae is not None and vae_keeps_fp32(spec.family, vae.force_upcast)
    return {
        name: "fp32" if name == "vae_decoder" and vae_fp32 else "fp16"
        for name in model_sources(manifest)
    }
