// The device-resident W2SD loop: latents, conditioning and UNet inputs/outputs
// stay in CUDA memory for the whole loop; the host uploads the initial latents
// and conditioning once and downloads the final latents once.
#pragma once

#include <memory>

#include "w2sd/loop_executor.h"

namespace w2sd::cuda {

// The loop strategy of device backends (MemoryKind::kCudaDevice): each lane runs
// on the backend's stream for that lane.
std::unique_ptr<LoopExecutor> make_device_executor();

}  // namespace w2sd::cuda
