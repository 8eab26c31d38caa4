// How a backend runs the W2SD loop: the host executor (buffers in host memory) or a
// device one (cuda/device_loop.h). Both run the same GuidedDenoiser (guided_denoiser.h)
// and differ only in where its buffers live. The backend factory (backend_factory.h)
// pairs each backend with its executor, so the engine never asks which backend it holds.
#pragma once

#include <memory>

#include "w2sd/ddim_schedule.h"
#include "w2sd/inference_backend.h"
#include "w2sd/loop_request.h"
#include "w2sd/reflection.h"

namespace w2sd {

class LoopExecutor {
 public:
  virtual ~LoopExecutor() = default;
  // Runs the loop in place on `latents` (host memory, request.shape.count()
  // floats) on `lane`. The request has passed check_conditioning.
  virtual LoopStats run(InferenceBackend& backend, const DdimSchedule& schedule,
                        const ReflectionSchedule& reflection, const LoopRequest& request,
                        float* latents, const ProgressFn& progress, int lane) = 0;
};

// Host memory: the guided denoiser's buffers are host vectors.
std::unique_ptr<LoopExecutor> make_host_executor();

}  // namespace w2sd
