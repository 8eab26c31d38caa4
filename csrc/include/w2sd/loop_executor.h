// How a backend runs the W2SD loop: the host strategy (latents in host memory,
// guidance batched by GuidedModel) or a device one (cuda/device_loop.h). The
// backend factory (backend_factory.h) pairs each backend with its strategy, so
// the engine never asks which backend it holds.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "w2sd/ddim_schedule.h"
#include "w2sd/guided_model.h"
#include "w2sd/inference_backend.h"
#include "w2sd/reflection.h"

namespace w2sd {

struct LoopRequest {
  LatentShape shape;
  int64_t num_inference_steps = 0;
  // Reflection window: explicit indices if `use_indices`, else the first `reflection_steps`.
  int64_t reflection_steps = 0;
  bool use_indices = false;
  std::vector<int64_t> reflection_indices;
  InversionMode inversion = InversionMode::kOfficial;
  ConditioningShape cond_shape;
  std::array<RoleConditioning, kNumRoles> roles;
};

struct LoopStats {
  int64_t unet_calls = 0;
  double loop_seconds = 0.0;
  double unet_seconds = 0.0;  // sum over UNet calls, as measured around the backend
  int lane = 0;
};

// The reflection window of a request (throws kInvalidArgument naming reflection_steps).
ReflectionSchedule reflection_schedule(const LoopRequest& request);

// Throws kInvalidArgument unless every role's conditioning is complete for this
// backend: a UNet index in range, cond embeddings, uncond ones when guided, and
// pooled embeddings and time ids when the UNet takes added conditions (SDXL).
void check_conditioning(const LoopRequest& request, const InferenceBackend& backend);

class LoopExecutor {
 public:
  virtual ~LoopExecutor() = default;
  // Runs the loop in place on `latents` (host memory, request.shape.count()
  // floats) on `lane`. The request has passed check_conditioning.
  virtual LoopStats run(InferenceBackend& backend, const DdimSchedule& schedule,
                        const ReflectionSchedule& reflection, const LoopRequest& request,
                        float* latents, const ProgressFn& progress, int lane) = 0;
};

// Host memory: GuidedModel batches guidance and fuses it with the update.
std::unique_ptr<LoopExecutor> make_host_executor();

}  // namespace w2sd
