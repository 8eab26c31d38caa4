"""Type stub of the compiled core (csrc/python/bindings.cpp); `mypy.stubtest` checks it
against the built extension in CI (scripts/lint.sh)."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_FloatArray = npt.NDArray[np.float32]
_Progress = Callable[[int, int], bool | None] | None
# strong, weak, denoiser: dicts with keys unet, guidance, cond, uncond, cond_pooled,
# uncond_pooled, time_ids (None where unused).
_RoleDict = Mapping[str, Any]

def load_ort_library(path: str) -> tuple[str, str, int]: ...
def cuda_compiled() -> bool: ...
def cuda_device_count() -> int: ...
def cuda_guided_ddim_update(
    unet_out: npt.ArrayLike,
    guided: bool,
    guidance: float,
    x: npt.ArrayLike,
    a: float,
    a_next: float,
    prediction_type: str,
    unet_dtype: str = "float32",
    device: int = 0,
) -> npt.NDArray[np.float32]: ...
def cuda_pack_sample(x: npt.ArrayLike, dtype: str, twice: bool, device: int = 0) -> bytes: ...
def backend_availability(backend: str) -> tuple[bool, str]: ...
def probe_gpu_provider(provider: str, device_id: int = 0) -> str: ...
def gpu_provider_options(
    provider: str,
    device_id: int,
    common: Sequence[tuple[str, str]],
    model: Sequence[tuple[str, str]],
) -> list[tuple[str, str]]: ...

GPU_INTRA_OP_THREADS: int
DEVICE_ALIGNMENT: int
SLOT_FLOATS: int

def plan_workspace(sizes: Sequence[int]) -> tuple[list[int], int]: ...
def slot_table(values: Sequence[float]) -> list[float]: ...
def grown_capacity(capacity: int, needed: int) -> int: ...
def doubled_batch(guided: Sequence[bool]) -> list[bool]: ...
def reshape_input_option(names: Sequence[str], shape: Mapping[str, int]) -> str: ...
def trim_mapped_files(dirs: Sequence[str]) -> int: ...

class LanePool:
    def __init__(self, lanes: int) -> None: ...
    def acquire(self) -> int: ...
    def release(self, lane: int) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def in_use(self) -> int: ...

def reflection_window(num_inference_steps: int, reflection: object) -> list[int]: ...
def guided_ddim_update(
    e_uncond: _FloatArray,
    e_cond: _FloatArray,
    guidance: float,
    x: _FloatArray,
    a: float,
    a_next: float,
    prediction_type: str,
) -> _FloatArray: ...
def cfg_combine(e_uncond: _FloatArray, e_cond: _FloatArray, guidance: float) -> _FloatArray: ...

class DdimSchedule:
    def __init__(
        self,
        num_train_timesteps: int,
        alphas_cumprod: _FloatArray,
        set_alpha_to_one: bool,
        steps_offset: int,
        timestep_spacing: str,
        prediction_type: str,
        num_inference_steps: int,
    ) -> None: ...
    @property
    def timesteps(self) -> list[int]: ...
    def step(
        self, model_output: _FloatArray, timestep: int, sample: _FloatArray
    ) -> _FloatArray: ...
    def inverse_step(
        self, model_output: _FloatArray, timestep: int, sample: _FloatArray
    ) -> _FloatArray: ...

class Engine:
    def __init__(
        self,
        library_path: str,
        unet_paths: Sequence[str],
        unet_inputs: Sequence[str],
        text_encoder_paths: Sequence[str],
        text_encoder_outputs: Sequence[Sequence[str]],
        vae_decoder_path: str,
        num_train_timesteps: int,
        alphas_cumprod: _FloatArray,
        set_alpha_to_one: bool,
        steps_offset: int,
        timestep_spacing: str,
        prediction_type: str,
        intra_op_threads: int = 0,
        graph_optimization_level: int = 99,
        provider: str = "cpu",
        device_id: int = 0,
        lanes: int = 1,
        provider_options: Mapping[str, str] = ...,
        memory_arena: bool = True,
        model_provider_options: Mapping[str, Mapping[str, str]] = ...,
        unet_shape_sessions: int = 0,
        warm_unet_shapes: Sequence[tuple[int, Mapping[str, int]]] = ...,
    ) -> None: ...
    @property
    def num_unets(self) -> int: ...
    def unet_sessions(self, unet: int) -> list[str]: ...
    @property
    def lanes_in_use(self) -> int: ...
    @property
    def num_text_encoders(self) -> int: ...
    def encode_text(self, encoder: int, input_ids: npt.NDArray[np.int64]) -> list[_FloatArray]: ...
    def decode_latents(self, latents: _FloatArray) -> _FloatArray: ...
    def run_loop(
        self,
        latents: _FloatArray,
        num_inference_steps: int,
        reflection: object,
        inversion: str,
        roles: Sequence[_RoleDict],
        progress: _Progress = None,
    ) -> tuple[_FloatArray, dict[str, Any]]: ...
    def run_many(
        self, requests: Sequence[Mapping[str, Any]], lanes: int
    ) -> list[dict[str, Any]]: ...
