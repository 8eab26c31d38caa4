// The device-resident W2SD loop: latents, conditioning and UNet inputs/outputs
// stay in CUDA memory for the whole loop; the host uploads the initial latents
// and conditioning once and downloads the final latents once.
#pragma once

#include "w2sd/ddim_schedule.h"
#include "w2sd/engine.h"
#include "w2sd/inference_backend.h"
#include "w2sd/reflection.h"

namespace w2sd::cuda {

// `latents` is host memory (in: initial, out: final). The backend must report
// MemoryKind::kCudaDevice and give the lane's stream.
LoopStats run_loop_on_device(InferenceBackend& backend, const DdimSchedule& schedule,
                             const ReflectionSchedule& reflection, const LoopRequest& request,
                             float* latents, const ProgressFn& progress, int lane);

}  // namespace w2sd::cuda
