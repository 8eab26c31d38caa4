"""Type stub of the compiled core (csrc/python/bindings.cpp)."""

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Role = tuple[int, float, FloatArray, FloatArray | None]

def load_ort_library(path: str) -> tuple[str, str, int]: ...
def cfg_combine(e_uncond: FloatArray, e_cond: FloatArray, guidance: float) -> FloatArray: ...

class DdimSchedule:
    def __init__(
        self,
        num_train_timesteps: int,
        alphas_cumprod: FloatArray,
        set_alpha_to_one: bool,
        steps_offset: int,
        timestep_spacing: str,
        prediction_type: str,
        num_inference_steps: int,
    ) -> None: ...
    @property
    def timesteps(self) -> list[int]: ...
    def step(self, model_output: FloatArray, timestep: int, sample: FloatArray) -> FloatArray: ...
    def inverse_step(
        self, model_output: FloatArray, timestep: int, sample: FloatArray
    ) -> FloatArray: ...

class Engine:
    def __init__(
        self,
        library_path: str,
        unet_paths: Sequence[str],
        text_encoder_path: str,
        vae_decoder_path: str,
        num_train_timesteps: int,
        alphas_cumprod: FloatArray,
        set_alpha_to_one: bool,
        steps_offset: int,
        timestep_spacing: str,
        prediction_type: str,
        intra_op_threads: int = 0,
        graph_optimization_level: int = 99,
    ) -> None: ...
    def encode_text(self, input_ids: npt.NDArray[np.int64]) -> FloatArray: ...
    def decode_latents(self, latents: FloatArray) -> FloatArray: ...
    def run_loop(
        self,
        latents: FloatArray,
        num_inference_steps: int,
        reflection: int | Sequence[int],
        inversion: str,
        roles: Sequence[Role],
        progress: Callable[[int, int], bool | None] | None = None,
    ) -> tuple[FloatArray, dict[str, float]]: ...
