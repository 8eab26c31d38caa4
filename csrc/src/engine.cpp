#include "w2sd/engine.h"

#include "w2sd/status.h"

namespace w2sd {

Engine::Engine(std::unique_ptr<InferenceBackend> backend, std::unique_ptr<LoopExecutor> executor,
               SchedulerConfig scheduler)
    : backend_(std::move(backend)),
      executor_(std::move(executor)),
      scheduler_(std::move(scheduler)) {
  W2SD_CHECK_ARG(backend_ != nullptr, "backend must not be null");
  W2SD_CHECK_ARG(executor_ != nullptr, "loop executor must not be null");
  lanes_ = std::make_unique<LanePool>(backend_->num_lanes());
}

LoopStats Engine::run_loop(const LoopRequest& request, float* latents, const ProgressFn& progress) {
  LaneLease lease(*lanes_);
  return run_on_lane(request, latents, progress, lease.lane());
}

LoopStats Engine::run_on_lane(const LoopRequest& request, float* latents,
                              const ProgressFn& progress, int lane) {
  W2SD_CHECK_ARG(lane >= 0 && lane < backend_->num_lanes(), "lane ", lane, " out of range");
  const DdimSchedule schedule(scheduler_, request.num_inference_steps);
  const ReflectionSchedule reflection = reflection_schedule(request);
  LoopRequest checked = request;
  check_conditioning(checked, *backend_);
  return executor_->run(*backend_, schedule, reflection, checked, latents, progress, lane);
}

std::vector<LaneJobResult> Engine::run_many(const std::vector<LoopRequest>& requests,
                                            const std::vector<float*>& latents,
                                            const std::vector<ProgressFn>& progress, int lanes,
                                            std::vector<LoopStats>* stats) {
  W2SD_CHECK_ARG(latents.size() == requests.size() && progress.size() == requests.size(),
                 "requests, latents and progress must have the same length");
  W2SD_CHECK_PARAM(lanes >= 1 && lanes <= backend_->num_lanes(), "lanes", "lanes must be in [1, ",
                   backend_->num_lanes(), "] for this backend, got ", lanes);
  stats->assign(requests.size(), LoopStats{});
  return run_on_lanes(
      static_cast<int64_t>(requests.size()), lanes,
      [&](int64_t j, int lane) {
        const auto k = static_cast<size_t>(j);
        (*stats)[k] = run_on_lane(requests[k], latents[k], progress[k], lane);
      },
      lanes_.get());
}

}  // namespace w2sd
