#include <chrono>
#include <vector>

#include "w2sd/loop_executor.h"
#include "w2sd/status.h"

namespace w2sd {

ReflectionSchedule reflection_schedule(const LoopRequest& request) {
  return request.use_indices ? ReflectionSchedule::from_indices(request.num_inference_steps,
                                                                request.reflection_indices)
                             : ReflectionSchedule::first_steps(request.num_inference_steps,
                                                               request.reflection_steps);
}

void check_conditioning(const LoopRequest& request, const InferenceBackend& backend) {
  const ConditioningShape& cs = request.cond_shape;
  W2SD_CHECK_ARG(request.shape.count() > 0, "latents must not be empty");
  // text_len == text_dim == 0: an unconditional denoiser (no text, no guidance).
  const bool unconditional = cs.text_len == 0 && cs.text_dim == 0;
  W2SD_CHECK_ARG(unconditional || (cs.text_len > 0 && cs.text_dim > 0),
                 "conditioning: text_len and text_dim must both be positive, or both 0");
  const bool added = cs.pooled_dim > 0;
  W2SD_CHECK_ARG(added == (cs.time_ids_dim > 0),
                 "pooled_dim and time_ids_dim must both be set (SDXL) or both be 0");
  for (int r = 0; r < kNumRoles; ++r) {
    const RoleConditioning& c = request.roles[static_cast<size_t>(r)];
    W2SD_CHECK_ARG(c.unet >= 0 && c.unet < backend.num_unets(), "role ", r, ": UNet index ", c.unet,
                   " out of range");
    if (unconditional) {
      W2SD_CHECK_ARG(c.cond == nullptr && c.uncond == nullptr, "role ", r,
                     ": embeddings given without a text shape");
      W2SD_CHECK_ARG(c.guidance == 1.0f, "role ", r,
                     ": an unconditional denoiser has no guidance (it must be 1)");
      continue;
    }
    W2SD_CHECK_ARG(c.cond != nullptr, "role ", r, ": missing conditional embeddings");
    // g == 1 makes e_u + g (e_c - e_u) == e_c: the conditional pass alone is exact.
    const bool guided = c.guidance != 1.0f;
    W2SD_CHECK_ARG(!guided || c.uncond != nullptr, "role ", r,
                   ": guidance != 1 needs unconditional embeddings");
    if (added) {
      W2SD_CHECK_ARG(c.cond_pooled && c.time_ids && (!guided || c.uncond_pooled), "role ", r,
                     ": this UNet needs pooled text embeddings and time ids");
    }
  }
}

namespace {

class HostLoopExecutor final : public LoopExecutor {
 public:
  LoopStats run(InferenceBackend& backend, const DdimSchedule& schedule,
                const ReflectionSchedule& reflection, const LoopRequest& request, float* latents,
                const ProgressFn& progress, int lane) override {
    GuidedModel model(backend, request.shape, request.cond_shape, request.roles,
                      schedule.prediction_type(), lane);
    std::vector<float> x_strong(static_cast<size_t>(request.shape.count()));
    const GuidedStepFn step = [&](Role role, const float* x, int64_t t, const DdimCoeffs& c,
                                  float* out) { model.step(role, x, t, c, out); };
    const auto start = std::chrono::steady_clock::now();
    run_reflection_loop(schedule, reflection, request.inversion, step, latents, x_strong.data(),
                        progress);
    LoopStats stats;
    stats.loop_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats.unet_calls = model.unet_calls();
    stats.unet_seconds = model.unet_seconds();
    stats.lane = lane;
    return stats;
  }
};

}  // namespace

std::unique_ptr<LoopExecutor> make_host_executor() { return std::make_unique<HostLoopExecutor>(); }

}  // namespace w2sd
