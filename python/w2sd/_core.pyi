"""Type stub of the compiled core (csrc/python/); `mypy.stubtest` checks it against the built
extension in CI (scripts/lint.sh). The test-only submodule `testing` has its own stub,
w2sd/testing.pyi."""

from collections.abc import Callable, Mapping, Sequence
from types import ModuleType

import numpy as np
import numpy.typing as npt

_FloatArray = npt.NDArray[np.float32]
_Progress = Callable[[int, int], bool | None] | None

testing: ModuleType

def load_ort_library(path: str) -> tuple[str, str, int]: ...
def load_openvino_library(path: str) -> tuple[str, str]: ...
def backend_availability(backend: str) -> tuple[bool, str]: ...
def cuda_compiled() -> bool: ...
def cuda_device_count() -> int: ...
def reflection_window(num_inference_steps: int, reflection: int | Sequence[int]) -> list[int]: ...

class SchedulerConfig:
    def __init__(
        self,
        num_train_timesteps: int,
        alphas_cumprod: npt.ArrayLike,
        set_alpha_to_one: bool,
        steps_offset: int,
        timestep_spacing: str,
        prediction_type: str,
    ) -> None: ...

class DdimSchedule:
    def __init__(
        self,
        num_train_timesteps: int,
        alphas_cumprod: npt.ArrayLike,
        set_alpha_to_one: bool,
        steps_offset: int,
        timestep_spacing: str,
        prediction_type: str,
        num_inference_steps: int,
    ) -> None: ...
    @property
    def timesteps(self) -> list[int]: ...
    def step(
        self, model_output: npt.ArrayLike, timestep: int, sample: npt.ArrayLike
    ) -> _FloatArray: ...
    def inverse_step(
        self, model_output: npt.ArrayLike, timestep: int, sample: npt.ArrayLike
    ) -> _FloatArray: ...

class ModelFiles:
    library_path: str
    unet_paths: list[str]
    unet_inputs: list[str]
    text_encoder_paths: list[str]
    text_encoder_outputs: list[list[str]]
    vae_decoder_path: str
    intra_op_threads: int
    graph_optimization_level: int
    memory_arena: bool
    def __init__(self) -> None: ...

class EngineConfig:
    provider: str
    models: ModelFiles
    scheduler: SchedulerConfig
    provider_options: list[tuple[str, str]]
    device_id: int
    lanes: int
    model_provider_options: dict[str, list[tuple[str, str]]]
    unet_shape_sessions: int
    warm_unet_shapes: list[tuple[int, Mapping[str, int]]]
    def __init__(self) -> None: ...

class RoleConditioning:
    unet: int
    guidance: float
    lora_scale: float
    cond: _FloatArray | None
    uncond: _FloatArray | None
    cond_pooled: _FloatArray | None
    uncond_pooled: _FloatArray | None
    time_ids: _FloatArray | None
    def __init__(self) -> None: ...

class LoopRequest:
    latents: _FloatArray
    num_inference_steps: int
    reflection: int | list[int]
    inversion: str
    strong: RoleConditioning
    weak: RoleConditioning
    denoiser: RoleConditioning
    progress: _Progress
    def __init__(self) -> None: ...

class LoopStats:
    @property
    def unet_calls(self) -> int: ...
    @property
    def loop_s(self) -> float: ...
    @property
    def unet_s(self) -> float: ...
    @property
    def lane(self) -> int: ...

class LaneResult:
    @property
    def latents(self) -> _FloatArray | None: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def lane(self) -> int: ...
    @property
    def start_seq(self) -> int: ...
    @property
    def end_seq(self) -> int: ...
    @property
    def stats(self) -> LoopStats: ...

class Engine:
    def __init__(self, config: EngineConfig) -> None: ...
    @property
    def num_unets(self) -> int: ...
    def unet_sessions(self, unet: int) -> list[str]: ...
    @property
    def lanes_in_use(self) -> int: ...
    @property
    def num_text_encoders(self) -> int: ...
    def encode_text(self, encoder: int, input_ids: npt.ArrayLike) -> list[_FloatArray]: ...
    def decode_latents(self, latents: npt.ArrayLike) -> _FloatArray: ...
    def run_loop(self, request: LoopRequest) -> tuple[_FloatArray, LoopStats]: ...
    def run_many(self, requests: Sequence[LoopRequest], lanes: int) -> list[LaneResult]: ...
