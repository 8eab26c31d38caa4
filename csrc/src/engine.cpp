#include "w2sd/engine.h"

#include <chrono>

#include "w2sd/status.h"
#ifdef W2SD_WITH_CUDA
#include "w2sd/cuda/device_loop.h"
#endif

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

LoopStats Engine::run_loop(const LoopRequest& request, float* latents, const ProgressFn& progress,
                           int lane) {
  W2SD_CHECK_ARG(lane >= 0 && lane < backend_->num_lanes(), "lane ", lane, " out of range");
  const DdimSchedule schedule(scheduler_, request.num_inference_steps);
  const ReflectionSchedule reflection =
      request.use_indices
          ? ReflectionSchedule::from_indices(request.num_inference_steps,
                                             request.reflection_indices)
          : ReflectionSchedule::first_steps(request.num_inference_steps, request.reflection_steps);
  if (backend_->memory() == MemoryKind::kCudaDevice) {
#ifdef W2SD_WITH_CUDA
    return cuda::run_loop_on_device(*backend_, schedule, reflection, request, latents, progress,
                                    lane);
#else
    detail::throw_error(ErrorCode::kBackend, "this build of w2sd has no CUDA support");
#endif
  }
  GuidedModel model(*backend_, request.shape, request.cond_shape, request.roles,
                    scheduler_.prediction_type, lane);
  std::vector<float> x_strong(static_cast<size_t>(request.shape.count()));
  LoopStats stats;
  const auto start = Clock::now();
  const GuidedStepFn step = [&](Role role, const float* x, int64_t t, const DdimCoeffs& c,
                                float* out) { model.step(role, x, t, c, out); };
  run_reflection_loop(schedule, reflection, request.inversion, step, latents, x_strong.data(),
                      progress);
  stats.loop_seconds = seconds_since(start);
  stats.unet_calls = model.unet_calls();
  stats.unet_seconds = model.unet_seconds();
  stats.lane = lane;
  return stats;
}

std::vector<LaneJobResult> Engine::run_many(const std::vector<LoopRequest>& requests,
                                            const std::vector<float*>& latents,
                                            const std::vector<ProgressFn>& progress, int lanes,
                                            std::vector<LoopStats>* stats) {
  W2SD_CHECK_ARG(latents.size() == requests.size() && progress.size() == requests.size(),
                 "requests, latents and progress must have the same length");
  W2SD_CHECK_ARG(lanes >= 1 && lanes <= backend_->num_lanes(), "lanes must be in [1, ",
                 backend_->num_lanes(), "] for this backend, got ", lanes);
  stats->assign(requests.size(), LoopStats{});
  return run_on_lanes(static_cast<int64_t>(requests.size()), lanes, [&](int64_t j, int lane) {
    const auto k = static_cast<size_t>(j);
    (*stats)[k] = run_loop(requests[k], latents[k], progress[k], lane);
  });
}

}  // namespace w2sd
