// One loaded engine: a backend, the loop strategy it runs with, and the
// scheduler config. Backend-agnostic: backend_factory.h builds one.
#pragma once

#include <memory>
#include <vector>

#include "w2sd/ddim_schedule.h"
#include "w2sd/inference_backend.h"
#include "w2sd/lane_scheduler.h"
#include "w2sd/loop_executor.h"
#include "w2sd/reflection.h"

namespace w2sd {

class Engine {
 public:
  Engine(std::unique_ptr<InferenceBackend> backend, std::unique_ptr<LoopExecutor> executor,
         SchedulerConfig scheduler);

  InferenceBackend& backend() { return *backend_; }
  const LanePool& lanes() const { return *lanes_; }
  const SchedulerConfig& scheduler() const { return scheduler_; }

  // Runs the W2SD loop in place on `latents` (request.shape.count() floats, host
  // memory) on a lane checked out of the engine's pool for the call (it waits while
  // every lane is busy): concurrent callers run on different lanes.
  LoopStats run_loop(const LoopRequest& request, float* latents, const ProgressFn& progress);

  // Runs several requests with up to `lanes` in flight at once (lane_scheduler.h), each
  // on a lane checked out of the same pool. stats[j] is filled for each request that
  // succeeds.
  std::vector<LaneJobResult> run_many(const std::vector<LoopRequest>& requests,
                                      const std::vector<float*>& latents,
                                      const std::vector<ProgressFn>& progress, int lanes,
                                      std::vector<LoopStats>* stats);

 private:
  std::unique_ptr<InferenceBackend> backend_;
  std::unique_ptr<LoopExecutor> executor_;
  SchedulerConfig scheduler_;
  std::unique_ptr<LanePool> lanes_;

  LoopStats run_on_lane(const LoopRequest& request, float* latents, const ProgressFn& progress,
                        int lane);
};

}  // namespace w2sd
