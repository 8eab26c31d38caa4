"""Exact Gaussian-mixture denoisers: the paper's mixture experiments, run through the runtime.

For data x0 ~ sum_k w_k N(mu_k, s^2 I), the noised marginal at level a (= alpha-bar) is
sum_k w_k N(sqrt(a) mu_k, v I) with v = a s^2 + 1 - a, so the optimal epsilon is exact:
eps(x) = -sqrt(1 - a) * grad log p_a(x) = sqrt(1 - a) / v * (x - sum_k r_k(x) sqrt(a) mu_k),
r = softmax_k(log w_k - |x - sqrt(a) mu_k|^2 / (2 v)). A mixture is over the C channels
of a sample; every (h, w) position is an independent draw.

``onnx_denoiser`` writes that formula as an ONNX graph (a valid plain denoiser for
``w2sd export --strong-onnx``); ``numpy_w2sd`` is the spec's loop written again in numpy
(float64) with the same formula, so the runtime's figures can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from w2sd.manifest import SchedulerSpec

# The scheduler of the mixture experiments: SD's DDIM configuration.
SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


@dataclass(frozen=True)
class GaussianMixture:
    weights: tuple[float, ...]  # K, summing to 1
    means: tuple[tuple[float, ...], ...]  # K x C
    std: float

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.means) or abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError("weights must be one per mean and sum to 1")

    @property
    def channels(self) -> int:
        return len(self.means[0])

    def eps(self, x: np.ndarray, a: float | np.ndarray) -> np.ndarray:
        """The exact epsilon at level `a` for x (B, C, H, W), in x's float type."""
        mu = np.sqrt(a) * np.asarray(self.means, x.dtype)[None, :, :, None, None]  # 1KC11
        v = a * self.std**2 + 1.0 - a
        diff = mu - x[:, None]  # B K C H W
        logits = np.log(np.asarray(self.weights, x.dtype))[None, :, None, None] - (diff**2).sum(
            2
        ) / (2 * v)
        r = np.exp(logits - logits.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        score = (r[:, :, None] * diff).sum(1) / v
        return (-np.sqrt(1.0 - a) * score).astype(x.dtype)

    def density_1d(self, xs: np.ndarray) -> np.ndarray:
        """The data density at points xs of a one-channel mixture."""
        means = np.asarray(self.means)[:, 0]
        s = self.std
        g = np.exp(-((xs[:, None] - means) ** 2) / (2 * s * s)) / (s * np.sqrt(2 * np.pi))
        return (g * np.asarray(self.weights)).sum(1)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n samples of the mixture itself, (n, C)."""
        k = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        return np.asarray(self.means)[k] + self.std * rng.standard_normal((n, self.channels))


def onnx_denoiser(
    mix: GaussianMixture,
    alphas_cumprod: list[float],
    prediction_type: str = "epsilon",
    per_sample_timestep: bool = False,
    output_name: str = "noise_pred",
) -> Any:
    """The mixture's exact epsilon (or v) as an ONNX model: inputs sample (B, C, H, W)
    with C static and H, W symbolic, timestep (1,) or (B,) float32; one output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k, c = len(mix.weights), mix.channels

    def const(name: str, value: Any, dtype: Any = np.float32) -> Any:
        return numpy_helper.from_array(np.asarray(value, dtype), name)

    inits = [
        const("alphas", alphas_cumprod),
        const("means", np.asarray(mix.means).reshape(1, k, c, 1, 1)),
        const("log_w", np.log(np.asarray(mix.weights)).reshape(1, k, 1, 1)),
        const("s2", mix.std**2),
        const("one", 1.0),
        const("two", 2.0),
        const("minus_one", -1.0),
        const("a_shape", [-1, 1, 1, 1, 1], np.int64),
        const("a_shape4", [-1, 1, 1, 1], np.int64),
        const("axis1", [1], np.int64),
        const("axis2", [2], np.int64),
    ]
    n = helper.make_node
    nodes = [
        n("Cast", ["timestep"], ["t_int"], to=TensorProto.INT64),
        n("Gather", ["alphas", "t_int"], ["a_flat"]),
        n("Reshape", ["a_flat", "a_shape"], ["a"]),  # (1 or B, 1, 1, 1, 1)
        n("Sqrt", ["a"], ["sqrt_a"]),
        n("Sub", ["one", "a"], ["one_minus_a"]),
        n("Sqrt", ["one_minus_a"], ["sigma"]),
        n("Mul", ["a", "s2"], ["a_s2"]),
        n("Add", ["a_s2", "one_minus_a"], ["v"]),
        n("Mul", ["sqrt_a", "means"], ["mu"]),  # (., K, C, 1, 1)
        n("Unsqueeze", ["sample", "axis1"], ["x5"]),  # (B, 1, C, H, W)
        n("Sub", ["mu", "x5"], ["diff"]),  # (B, K, C, H, W)
        n("Mul", ["diff", "diff"], ["diff2"]),
        n("ReduceSum", ["diff2", "axis2"], ["sq"], keepdims=0),  # (B, K, H, W)
        n("Mul", ["v", "two"], ["two_v5"]),
        n("Squeeze", ["two_v5", "axis2"], ["two_v"]),  # (., 1, 1, 1)
        n("Div", ["sq", "two_v"], ["sq_scaled"]),
        n("Sub", ["log_w", "sq_scaled"], ["logits"]),
        n("Softmax", ["logits"], ["r"], axis=1),
        n("Unsqueeze", ["r", "axis2"], ["r5"]),
        n("Mul", ["r5", "diff"], ["weighted"]),
        n("ReduceSum", ["weighted", "axis1"], ["sum_k"], keepdims=0),  # (B, C, H, W)
        n("Reshape", ["v", "a_shape4"], ["v4"]),
        n("Reshape", ["sigma", "a_shape4"], ["sigma4"]),
        n("Div", ["sum_k", "v4"], ["score"]),
        n("Mul", ["sigma4", "score"], ["sigma_score"]),
        n(
            "Mul",
            ["sigma_score", "minus_one"],
            ["eps" if prediction_type == "v_prediction" else output_name],
        ),
    ]
    if prediction_type == "v_prediction":
        # v = (eps - sqrt(1 - a) x) / sqrt(a)
        nodes += [
            n("Reshape", ["sqrt_a", "a_shape4"], ["sqrt_a4"]),
            n("Mul", ["sigma4", "sample"], ["sigma_x"]),
            n("Sub", ["eps", "sigma_x"], ["v_num"]),
            n("Div", ["v_num", "sqrt_a4"], [output_name]),
        ]
    elif prediction_type != "epsilon":
        raise ValueError(
            f"prediction_type must be epsilon or v_prediction, got {prediction_type!r}"
        )
    sample = helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["B", c, "H", "W"])
    timestep = helper.make_tensor_value_info(
        "timestep", TensorProto.FLOAT, ["B" if per_sample_timestep else 1]
    )
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["B", c, "H", "W"])
    graph = helper.make_graph(nodes, "gaussian_mixture_eps", [sample, timestep], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# -- the spec's loop, again, in numpy ---------------------------------------------------


def ddim_timesteps(sched: SchedulerSpec, steps: int) -> list[int]:
    """DDIMScheduler.set_timesteps (leading and trailing spacing)."""
    n = sched.num_train_timesteps
    if sched.timestep_spacing == "leading":
        ratio = n // steps
        return [int(i * ratio + sched.steps_offset) for i in reversed(range(steps))]
    if sched.timestep_spacing == "trailing":
        ratio = n / steps
        return [int(round(n - i * ratio)) - 1 for i in range(steps)]
    raise ValueError(f"timestep_spacing {sched.timestep_spacing!r} not written here")


def numpy_w2sd(
    sched: SchedulerSpec,
    strong: GaussianMixture,
    weak: GaussianMixture,
    denoiser: GaussianMixture,
    latents: np.ndarray,
    steps: int,
    reflection_steps: int,
    inversion: str = "official",
) -> np.ndarray:
    """W2SD-SPEC's loop (DDIM, eta 0) with exact mixture models, in float64. The models
    give epsilon or v (per the scheduler's prediction_type) at their timestep's level; each
    step converts with the level it treats the sample as being at (``to_eps_x0``)."""
    abar = np.asarray(sched.alphas_cumprod, np.float64)
    v_pred = sched.prediction_type == "v_prediction"
    n = sched.num_train_timesteps
    taus = ddim_timesteps(sched, steps)
    delta = n // steps
    final = 1.0 if sched.set_alpha_to_one else abar[0]

    def model(mix: GaussianMixture, x: np.ndarray, t: int) -> np.ndarray:
        a = abar[t]
        eps = mix.eps(x, a)
        return (eps - np.sqrt(1 - a) * x) / np.sqrt(a) if v_pred else eps

    def update(e: np.ndarray, x: np.ndarray, a: float, a2: float) -> np.ndarray:
        if v_pred:
            x0, eps = np.sqrt(a) * x - np.sqrt(1 - a) * e, np.sqrt(a) * e + np.sqrt(1 - a) * x
        else:
            x0, eps = (x - np.sqrt(1 - a) * e) / np.sqrt(a), e
        return np.sqrt(a2) * x0 + np.sqrt(1 - a2) * eps

    def step(e: np.ndarray, t: int, x: np.ndarray) -> np.ndarray:  # DDIMScheduler.step
        prev = t - delta
        return update(e, x, abar[t], abar[prev] if prev >= 0 else final)

    def inv_step(e: np.ndarray, t: int, x: np.ndarray) -> np.ndarray:  # DDIMInverseScheduler
        q = min(t - delta, n - 1)
        return update(e, x, abar[q] if q >= 0 else final, abar[t])

    x = latents.astype(np.float64)
    for i, t in enumerate(taus):
        if i < reflection_steps:
            xs = step(model(strong, x, t), t, x)
            t_inv = taus[i + 1] if inversion == "official" else t
            x = inv_step(model(weak, xs, t), t_inv, xs)
        x = step(model(denoiser, x, t), t, x)
    return x
