"""Test-only entry points of the compiled core (``w2sd._core.testing``): the per-element
math as the CUDA kernels compute it, the device loop's buffer layout and batching policy,
the OpenVINO and GPU session helpers, the lane pool, and a way to throw through the error
route. The tests import them from here; production code never imports this module."""

from __future__ import annotations

from . import _core

_testing = _core.testing

cfg_combine = _testing.cfg_combine
guided_ddim_update = _testing.guided_ddim_update
cuda_guided_ddim_update = _testing.cuda_guided_ddim_update
cuda_pack_sample = _testing.cuda_pack_sample
plan_workspace = _testing.plan_workspace
slot_table = _testing.slot_table
grown_capacity = _testing.grown_capacity
doubled_batch = _testing.doubled_batch
reshape_input_option = _testing.reshape_input_option
trim_mapped_files = _testing.trim_mapped_files
with_file_mappings_freed = _testing.with_file_mappings_freed
probe_gpu_provider = _testing.probe_gpu_provider
gpu_provider_options = _testing.gpu_provider_options
cuda_graph_ids = _testing.cuda_graph_ids
cuda_graph_slot_copies = _testing.cuda_graph_slot_copies
wants_cuda_graph = _testing.wants_cuda_graph
raise_error = _testing.raise_error
LanePool = _testing.LanePool
DEVICE_ALIGNMENT: int = _testing.DEVICE_ALIGNMENT
SLOT_FLOATS: int = _testing.SLOT_FLOATS
GPU_INTRA_OP_THREADS: int = _testing.GPU_INTRA_OP_THREADS
MAX_CUDA_GRAPHS_PER_SESSION: int = _testing.MAX_CUDA_GRAPHS_PER_SESSION
