"""Plain ONNX denoisers (W2SD-SPEC, "Models that are not Stable Diffusion") -> an engine dir.

The model contract, checked here and named when broken:
- input ``sample``: float32 (B, C, H, W), any C, H, W >= 1 (static or symbolic);
- input ``timestep``: float32 of shape (1,) or (B,);
- optional input ``encoder_hidden_states`` (a conditional model; not supported yet: it needs
  a text encoder the engine does not have);
- exactly one output, of the sample's shape, read as epsilon or v per the scheduler config.

Each distinct model is normalised to the runtime's UNet interface (inputs ``sample`` and a
(1,) ``timestep``, output ``out_sample``): a (B,) timestep input gets an ``Expand`` of the
(1,) one in front, and the output an ``Identity`` to the runtime's name. The normalised
model must give exactly the original's output (checked on a random sample).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.common import artifacts_under, replace_dir
from w2sd import __version__
from w2sd.errors import ExportVerificationError, InvalidArgumentError
from w2sd.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ROLES,
    EngineManifest,
    sha256_file,
    write_manifest,
)

from .common import check_out_and_defaults, defaults_section, scheduler_section

SAMPLE, TIMESTEP, TEXT = "sample", "timestep", "encoder_hidden_states"
OUTPUT = "out_sample"
_BATCH_TIMESTEP = "w2sd_timestep_per_sample"


@dataclass
class OnnxExportOptions:
    strong: Path
    weak: Path
    out: Path
    scheduler_config: Path
    denoiser: Path | None = None
    num_inference_steps: int = 25
    reflection_steps: int = 12
    inversion: str = "official"
    force: bool = False
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))


@dataclass(frozen=True)
class DenoiserFacts:
    """What the contract check learnt about one model."""

    sample_shape: tuple[int | None, ...]  # (C, H, W), None where symbolic
    timestep_per_sample: bool  # declared (B,) rather than (1,)
    output: str


def _dims(value_info: Any) -> list[int | str | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def _elem_type(value_info: Any) -> int:
    return value_info.type.tensor_type.elem_type


def check_contract(model: Any, where: str) -> DenoiserFacts:
    """Raise InvalidArgumentError naming the first way `model` breaks the contract."""
    from onnx import TensorProto

    initializers = {t.name for t in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in initializers}
    for name in inputs:
        if name not in (SAMPLE, TIMESTEP, TEXT):
            raise InvalidArgumentError(
                f"{where}: unexpected input '{name}' (a denoiser takes '{SAMPLE}', '{TIMESTEP}' "
                f"and optionally '{TEXT}')"
            )
    for name in (SAMPLE, TIMESTEP):
        if name not in inputs:
            raise InvalidArgumentError(
                f"{where}: no input '{name}' (inputs: {sorted(inputs) or 'none'})"
            )
    if TEXT in inputs:
        raise InvalidArgumentError(
            f"{where}: input '{TEXT}' makes this a conditional denoiser, which needs a text "
            "encoder; plain ONNX engines support unconditional denoisers only (export a "
            "diffusers folder with --strong/--weak for text-to-image models)"
        )
    sample, timestep = inputs[SAMPLE], inputs[TIMESTEP]
    for name, vi in ((SAMPLE, sample), (TIMESTEP, timestep)):
        if _elem_type(vi) != TensorProto.FLOAT:
            kind = TensorProto.DataType.Name(_elem_type(vi)).lower()
            raise InvalidArgumentError(f"{where}: input '{name}' must be float32, got {kind}")
    sdims = _dims(sample)
    if len(sdims) != 4:
        raise InvalidArgumentError(
            f"{where}: input '{SAMPLE}' must be 4-D (B, C, H, W), got {len(sdims)}-D"
        )
    tdims = _dims(timestep)
    if len(tdims) != 1:
        raise InvalidArgumentError(
            f"{where}: input '{TIMESTEP}' must be 1-D, of shape (1,) or (B,); got {len(tdims)}-D"
        )
    static_batch = sdims[0] if isinstance(sdims[0], int) and sdims[0] > 0 else None
    if static_batch is not None and static_batch != 1:
        raise InvalidArgumentError(
            f"{where}: input '{SAMPLE}' has a fixed batch of {static_batch}; the loop runs any "
            "batch, so the batch dimension must be symbolic"
        )
    t0 = tdims[0]
    if isinstance(t0, int) and t0 not in (0, 1):
        raise InvalidArgumentError(
            f"{where}: input '{TIMESTEP}' has fixed length {t0}; it must be (1,) or (B,)"
        )
    if len(model.graph.output) != 1:
        raise InvalidArgumentError(
            f"{where}: a denoiser has exactly one output (its epsilon or v), this model has "
            f"{len(model.graph.output)}"
        )
    out = model.graph.output[0]
    if _elem_type(out) not in (0, TensorProto.FLOAT):
        raise InvalidArgumentError(f"{where}: output '{out.name}' must be float32")
    chw = tuple(d if isinstance(d, int) and d > 0 else None for d in sdims[1:])
    return DenoiserFacts(chw, not (isinstance(t0, int) and t0 == 1), out.name)


def normalise(model: Any, facts: DenoiserFacts) -> Any:
    """The model with the runtime's interface: (1,) timestep, output named out_sample."""
    from onnx import TensorProto, helper

    graph = model.graph
    if facts.timestep_per_sample:
        for node in graph.node:
            node.input[:] = [_BATCH_TIMESTEP if n == TIMESTEP else n for n in node.input]
        for out in graph.output:
            if out.name == TIMESTEP:
                raise InvalidArgumentError("a denoiser must not output its timestep input")
        prefix = "w2sd_timestep_"
        graph.initializer.append(helper.make_tensor(prefix + "start", TensorProto.INT64, [1], [0]))
        graph.initializer.append(helper.make_tensor(prefix + "end", TensorProto.INT64, [1], [1]))
        front = [
            helper.make_node("Shape", [SAMPLE], [prefix + "shape"]),
            helper.make_node(
                "Slice", [prefix + "shape", prefix + "start", prefix + "end"], [prefix + "batch"]
            ),
            # (1,) -> (B,): every sample of the batch is at the same timestep.
            helper.make_node("Expand", [TIMESTEP, prefix + "batch"], [_BATCH_TIMESTEP]),
        ]
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(front + nodes)
    for vi in graph.input:
        if vi.name == TIMESTEP:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            dims.add().dim_value = 1
    out = graph.output[0]
    if out.name != OUTPUT:
        graph.node.append(helper.make_node("Identity", [out.name], [OUTPUT]))
        out.name = OUTPUT
    return model


def _probe_shape(facts: DenoiserFacts, batch: int) -> tuple[int, ...]:
    return (batch, *(d if d is not None else 3 for d in facts.sample_shape))


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def verify(original: Path, normalised: Path, facts: DenoiserFacts, where: str) -> float:
    """Run both models on a random batch of 2; the normalised one must match exactly and
    give a finite output of the sample's shape. Returns max |difference|."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(_probe_shape(facts, 2)).astype(np.float32)
    t = np.array([500.0], np.float32)
    t_orig = np.full(2, 500.0, np.float32) if facts.timestep_per_sample else t
    try:
        ref = _run(original, {SAMPLE: x, TIMESTEP: t_orig})
    except Exception as e:  # ONNX Runtime raises its own exception types
        raise InvalidArgumentError(
            f"{where}: the model fails to run on a sample of shape {x.shape}: {e}"
        ) from None
    if ref.shape != x.shape:
        raise InvalidArgumentError(
            f"{where}: output shape {ref.shape} differs from the sample's {x.shape}"
        )
    if not np.isfinite(ref).all():
        raise InvalidArgumentError(f"{where}: the output has NaN or inf on a normal sample")
    got = _run(normalised, {SAMPLE: x, TIMESTEP: t})
    diff = float(np.abs(got - ref).max())
    if diff != 0.0:
        raise ExportVerificationError(f"{where}: normalised model differs by {diff:.3g}")
    return diff


def scheduler_facts(config_path: Path) -> dict[str, Any]:
    """A diffusers DDIMScheduler config file -> the manifest's scheduler section."""
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgumentError(
            f"--scheduler-config: cannot read '{config_path}': {e}"
        ) from None
    if not isinstance(cfg, dict):
        raise InvalidArgumentError(f"--scheduler-config: '{config_path}' is not a JSON object")
    return scheduler_section(cfg)


def export_onnx_engine(opts: OnnxExportOptions) -> Path:
    """Check, normalise and copy the role models into a new engine dir (atomically)."""
    import onnx

    log = opts.log
    paths = {"strong": Path(opts.strong), "weak": Path(opts.weak)}
    paths["denoiser"] = Path(opts.denoiser) if opts.denoiser else paths["strong"]
    out = Path(opts.out)
    check_out_and_defaults(
        out, opts.force, opts.inversion, opts.num_inference_steps, opts.reflection_steps
    )
    for role, p in paths.items():
        if not p.is_file():
            raise InvalidArgumentError(f"--{role}-onnx: '{p}' is not a file")
    scheduler = scheduler_facts(Path(opts.scheduler_config))

    # One artifact per distinct model file.
    digests: dict[str, int] = {}
    groups: list[tuple[Path, list[str]]] = []
    role_unet: dict[str, int] = {}
    for role in ROLES:
        digest = sha256_file(paths[role])
        if digest not in digests:
            digests[digest] = len(groups)
            groups.append((paths[role], []))
        role_unet[role] = digests[digest]
        groups[role_unet[role]][1].append(role)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        shape: tuple[int | None, ...] | None = None
        unets, checks = [], {}
        for idx, (src, roles) in enumerate(groups):
            where = f"--{roles[0]}-onnx '{src}'"
            log(f"[{idx + 1}/{len(groups)}] denoiser {idx} ({', '.join(roles)}) from {src}")
            try:
                model = onnx.load(str(src))
            except Exception as e:  # onnx raises DecodeError and others
                raise InvalidArgumentError(f"{where}: not a readable ONNX model ({e})") from None
            facts = check_contract(model, where)
            if shape is not None and shape != facts.sample_shape:
                raise InvalidArgumentError(
                    f"{where}: sample shape (B, {facts.sample_shape}) differs from the other "
                    f"roles' (B, {shape}): every role denoises the same latents"
                )
            shape = facts.sample_shape
            rel = f"unet{idx}/model.onnx"
            (tmp / rel).parent.mkdir(parents=True)
            onnx.save_model(normalise(model, facts), str(tmp / rel))
            checks[f"unet{idx}"] = verify(src, tmp / rel, facts, where)
            unets.append({"file": rel, "source": str(src), "lora": None, "roles": roles})
        assert shape is not None
        manifest = EngineManifest.model_validate(
            {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "created_by": f"w2sd {__version__}",
                "family": "onnx",
                "sources": {r: str(p) for r, p in paths.items()},
                "scheduler": scheduler,
                "latent_channels": shape[0],
                "vae_scale_factor": 1,
                "vae_scaling_factor": 1.0,
                "image": None,
                "text": None,
                "unet_added_conditions": None,
                "unets": unets,
                "roles": {
                    r: {"unet": role_unet[r], "text": None, "guidance": 1.0, "lora_scale": None}
                    for r in ROLES
                },
                "defaults": defaults_section(
                    opts.num_inference_steps, opts.reflection_steps, opts.inversion
                ),
                "models": {
                    "unet": {"inputs": [SAMPLE, TIMESTEP], "outputs": [OUTPUT]},
                    "vae_decoder": None,
                },
                "export_checks": checks,
                "artifacts": artifacts_under(tmp, tmp),
                "backends": {},
                "denoiser": {"sample_shape": list(shape), "conditional": False},
            }
        )
        write_manifest(tmp, manifest)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"engine dir written: {out}")
    return out
