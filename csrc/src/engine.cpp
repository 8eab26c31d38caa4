#include "w2sd/engine.h"

#include <chrono>

#include "w2sd/status.h"

namespace w2sd {
namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}
}  // namespace

Engine::Engine(std::unique_ptr<InferenceBackend> backend, SchedulerConfig scheduler)
    : backend_(std::move(backend)), scheduler_(std::move(scheduler)) {
  W2SD_CHECK_ARG(backend_ != nullptr, "backend must not be null");
}

LoopStats Engine::run_loop(const LoopRequest& request, float* latents,
                           const ProgressFn& progress) {
  const DdimSchedule schedule(scheduler_, request.num_inference_steps);
  const ReflectionSchedule reflection =
      request.use_indices
          ? ReflectionSchedule::from_indices(request.num_inference_steps,
                                             request.reflection_indices)
          : ReflectionSchedule::first_steps(request.num_inference_steps, request.reflection_steps);
  GuidedModel model(*backend_, request.shape, request.cond_shape, request.roles);
  LoopStats stats;
  const auto start = Clock::now();
  const GuidedPredictFn predict = [&](Role role, const float* x, int64_t t, float* out) {
    model.predict(role, x, t, out);
  };
  run_reflection_loop(schedule, reflection, request.inversion, predict, latents,
                      request.shape.count(), progress);
  stats.loop_seconds = seconds_since(start);
  stats.unet_calls = model.unet_calls();
  stats.unet_seconds = model.unet_seconds();
  return stats;
}

}  // namespace w2sd
