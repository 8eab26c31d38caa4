// One loaded engine: a backend plus the scheduler config, and the three stages
// of a sample (text encoding, the reflection loop, VAE decoding).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "w2sd/ddim_schedule.h"
#include "w2sd/guided_model.h"
#include "w2sd/inference_backend.h"
#include "w2sd/lane_scheduler.h"
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
  int64_t host_copies_in_loop = 0;  // device backends: host<->device copies between steps
};

class Engine {
 public:
  Engine(std::unique_ptr<InferenceBackend> backend, SchedulerConfig scheduler);

  InferenceBackend& backend() { return *backend_; }
  const SchedulerConfig& scheduler() const { return scheduler_; }

  // Runs the W2SD loop in place on `latents` (request.shape.count() floats, host
  // memory) on lane `lane`.
  LoopStats run_loop(const LoopRequest& request, float* latents, const ProgressFn& progress,
                     int lane = 0);

  // Runs several requests with up to `lanes` in flight at once (lane_scheduler.h).
  // stats[j] is filled for each request that succeeds.
  std::vector<LaneJobResult> run_many(const std::vector<LoopRequest>& requests,
                                      const std::vector<float*>& latents,
                                      const std::vector<ProgressFn>& progress, int lanes,
                                      std::vector<LoopStats>* stats);

 private:
  std::unique_ptr<InferenceBackend> backend_;
  SchedulerConfig scheduler_;
};

}  // namespace w2sd
