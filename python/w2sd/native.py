"""The compiled core (``w2sd._core``), imported on first use, and the conversions of
manifest facts into its typed objects."""

from __future__ import annotations

from typing import Any

import numpy as np

from .manifest import SchedulerSpec


def core() -> Any:
    from . import _core

    return _core


def typed(cls: Any, **fields: Any) -> Any:
    """An instance of one of the core's typed classes (EngineConfig, RoleConditioning, ...)
    with `fields` set; a misspelt field is an AttributeError, not a silent extra key."""
    obj = cls()
    for name, value in fields.items():
        if not hasattr(obj, name):
            raise AttributeError(f"{cls.__name__} has no field {name!r}")
        setattr(obj, name, value)
    return obj


def scheduler_kwargs(scheduler: SchedulerSpec) -> dict[str, Any]:
    """The scheduler fields the C++ core takes."""
    return {
        "num_train_timesteps": scheduler.num_train_timesteps,
        "alphas_cumprod": np.asarray(scheduler.alphas_cumprod, dtype=np.float32),
        "set_alpha_to_one": scheduler.set_alpha_to_one,
        "steps_offset": scheduler.steps_offset,
        "timestep_spacing": scheduler.timestep_spacing,
        "prediction_type": scheduler.prediction_type,
    }


def scheduler_config(scheduler: SchedulerSpec) -> Any:
    """The core's SchedulerConfig for a manifest's scheduler."""
    return core().SchedulerConfig(**scheduler_kwargs(scheduler))


def ddim_schedule(scheduler: SchedulerSpec, num_inference_steps: int) -> Any:
    """The core's DdimSchedule (timesteps, step, inverse_step) for T steps."""
    return core().DdimSchedule(
        **scheduler_kwargs(scheduler), num_inference_steps=num_inference_steps
    )
