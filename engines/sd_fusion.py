"""ONNX Runtime's own Stable Diffusion graph fusions (``onnxruntime.transformers.optimizer``,
what its ``optimize_pipeline.py`` runs) for the CUDA build, with two fixes at the edge:

- ``FusionAttentionUnet.get_num_heads`` calls ``int()`` on a one-element 1-D array, which
  numpy 2.4 refuses (TypeError): ``_num_heads_fix`` reads the head count with ``.item()``;
- the exporter writes each group norm's affine parameters as ``Unsqueeze`` of the 1-D
  weights, where the GroupNorm fusion looks for (C, 1, 1) constants:
  ``fold_parameter_unsqueezes`` folds them into (C, 1, 1) initializers first.

``fuse_model`` returns the fused-operator counts and the source's attention and group-norm
counts, so that a build can say what was fused and refuse a UNet whose attentions were not
all fused (``check_unet_fusion``).
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from w2sd.errors import BackendError

# Fused operators whose kernels ONNX Runtime has for CUDA only: off for a CPU graph.
CUDA_ONLY_FUSIONS = (
    "enable_nhwc_conv",
    "enable_group_norm",
    "enable_skip_group_norm",
    "enable_bias_splitgelu",
    "enable_bias_add",
    "enable_packed_qkv",
    "enable_packed_kv",
)
# The model types of ONNX Runtime's SD optimizer, per engine model kind.
MODEL_TYPES = {"unet": "unet", "text_encoder": "clip", "vae_decoder": "vae"}
ATTENTION_OPS = ("MultiHeadAttention", "Attention")
# A UNet exported with its LoRA unfused takes the scale as this input (export/lora_input.py).
LORA_SCALE_INPUT = "lora_scale"
GROUP_NORM_OPS = ("GroupNorm", "SkipGroupNorm")


def _heads_from_concat(fusion: Any, reshape_q: Any) -> int:
    """The head count in the (0, 0, heads, head_dim) shape a torch 2 export reshapes Q to."""
    import numpy as np

    parent = fusion.model.get_parent(reshape_q, 1)
    if parent is None or parent.op_type != "Concat" or len(parent.input) != 4:
        return 0
    value = fusion.model.get_constant_value(parent.input[2])
    if not isinstance(value, np.ndarray) or value.size != 1:
        return 0
    return max(int(value.reshape(-1)[0]), 0)


@contextlib.contextmanager
def _num_heads_fix() -> Iterator[None]:
    """Patch ``FusionAttentionUnet.get_num_heads`` for torch 2 graphs while fusing."""
    import onnxruntime.transformers.optimizer  # noqa: F401  (puts its folder on sys.path)

    # The optimizer imports its fusions as top-level modules: patch the class it uses.
    module = sys.modules.get("fusion_attention_unet")
    if module is None:
        import fusion_attention_unet as module  # type: ignore[import-not-found, no-redef]
    cls = module.FusionAttentionUnet
    original = cls.get_num_heads

    def get_num_heads(self: Any, reshape_q: Any, is_torch2: bool = False) -> int:
        if is_torch2:
            return _heads_from_concat(self, reshape_q)
        return int(original(self, reshape_q, is_torch2))

    cls.get_num_heads = get_num_heads
    try:
        yield
    finally:
        cls.get_num_heads = original


def fold_parameter_unsqueezes(graph: Any) -> int:
    """Replace ``Unsqueeze(W, axes)`` of an initializer (possibly through Identity nodes)
    with constant axes by an initializer holding the result. Returns how many were folded."""
    import numpy as np
    from onnx import numpy_helper

    weights = {i.name: i for i in graph.initializer}
    axes_of = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value"
    }
    alias: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in weights.keys() | alias.keys():
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
    kept, folded = [], []
    for node in graph.node:
        source = alias.get(node.input[0], node.input[0]) if node.input else ""
        if node.op_type != "Unsqueeze" or source not in weights or len(node.input) != 2:
            kept.append(node)
            continue
        if node.input[1] not in axes_of:
            kept.append(node)
            continue
        value = numpy_helper.to_array(weights[source])
        axes = [int(a) for a in np.atleast_1d(axes_of[node.input[1]])]
        rank = value.ndim + len(axes)
        for axis in sorted(a % rank for a in axes):
            value = np.expand_dims(value, axis)
        folded.append(numpy_helper.from_array(value, node.output[0]))
    graph.initializer.extend(folded)
    del graph.node[:]
    graph.node.extend(kept)
    return len(folded)


def fuse_model(src: Path, dst: Path, kind: str, *, cuda: bool = True) -> dict[str, int]:
    """Write `src` (an fp32 ONNX model of `kind`: unet, text_encoder, vae_decoder) fused by
    ONNX Runtime's SD optimizer to `dst`. ``cuda=False`` keeps only fusions that have CPU
    kernels (attention, layer norms). Returns the fused-operator counts, and the source's
    ``source_attentions`` (Softmax nodes) and ``source_group_norms``."""
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model = onnx.load(str(src), load_external_data=True)
    ops = Counter(n.op_type for n in model.graph.node)
    fold_parameter_unsqueezes(model.graph)
    model_type = MODEL_TYPES[kind]
    options = FusionOptions(model_type)
    if not cuda:
        for name in CUDA_ONLY_FUSIONS:
            setattr(options, name, False)
    lora_input = LORA_SCALE_INPUT in {i.name for i in model.graph.input}
    with _num_heads_fix():
        fused = optimize_model(
            model,
            model_type=model_type,
            num_heads=0,  # read from the graph, per attention
            hidden_size=0,
            opt_level=0,
            optimization_options=options,
            use_gpu=cuda,
        )
    counts = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
    counts["source_attentions"] = ops["Softmax"]
    counts["source_group_norms"] = ops["InstanceNormalization"]
    counts["lora_input"] = int(lora_input)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        fused.model,
        str(dst),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=dst.name + ".data",
        size_threshold=1024,
    )
    return counts


def fused(counts: dict[str, int], ops: tuple[str, ...]) -> int:
    return sum(counts.get(op, 0) for op in ops)


def lora_branches(graph: Any) -> int:
    """How many nodes apply the LoRA scale: consume a tensor computed from ``lora_scale``
    and constants alone (each LoRA branch's scaling)."""
    constants = {i.name for i in graph.initializer} | {""}
    scale = {LORA_SCALE_INPUT}
    for node in graph.node:  # topological order
        if node.op_type == "Constant":
            constants.update(node.output)
        elif set(node.input) <= scale | constants and set(node.input) & scale:
            scale.update(node.output)
    return sum(1 for n in graph.node if set(n.input) & scale and not set(n.output) <= scale)


def check_unet_fusion(name: str, counts: dict[str, int]) -> None:
    """Refuse a UNet of which not every attention was fused."""
    want, got = counts["source_attentions"], fused(counts, ATTENTION_OPS)
    if got < want:
        raise BackendError(
            f"{name}: ONNX Runtime's SD optimizer fused {got} of its {want} attentions; an "
            "unfused attention materialises its scores in memory (build with an exporter "
            "and diffusers version the optimizer knows, or report the model)",
            param=name,
        )
