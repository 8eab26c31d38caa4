// Where the device loop keeps its buffers, computed on the host (no CUDA headers:
// the CPU tests check the layout). One allocation per lane holds every buffer of a
// request, each at a 256-byte aligned offset (TensorRT requires 256-byte aligned
// tensor addresses; cudaMalloc gives that alignment to the allocation itself), and
// every scalar the UNet reads by pointer (each step's timestep, each role's LoRA
// scale) gets its own aligned slot rather than an element of a packed array.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace w2sd {

constexpr size_t kDeviceAlignment = 256;
// Floats between consecutive scalar slots (one slot per kDeviceAlignment bytes).
constexpr size_t kSlotFloats = kDeviceAlignment / sizeof(float);

struct WorkspaceLayout {
  std::vector<size_t> offsets;  // byte offset of each buffer, multiples of kDeviceAlignment
  size_t bytes = 0;             // total size, a multiple of kDeviceAlignment
};

// Lays `sizes` (bytes) out one after another, each at an aligned offset.
WorkspaceLayout plan_workspace(const std::vector<size_t>& sizes);

// `values`, one per aligned slot: the host image of a slot table (values[i] at float
// index i * kSlotFloats).
std::vector<float> slot_table(const std::vector<float>& values);

// How much a lane's workspace grows to when a request needs `needed` bytes and it has
// `capacity`: unchanged if it fits, else `needed` rounded up with 25% headroom, so a
// stream of slightly larger requests does not reallocate every time.
size_t grown_capacity(size_t capacity, size_t needed);

}  // namespace w2sd
