#include <algorithm>
#include <chrono>
#include <vector>

#include "w2sd/guided_denoiser.h"
#include "w2sd/loop_executor.h"

namespace w2sd {
namespace {

// The guided denoiser's buffers in host memory.
class HostMemory final : public DenoiserMemory {
 public:
  HostMemory(const GuidancePlan& plan, int64_t n)
      : plan_(plan),
        n_(static_cast<size_t>(n)),
        sample_in_(plan.any_doubled ? 2 * n_ : 0),
        unet_out_(plan.any_doubled ? 2 * n_ : n_) {}

  std::array<const float*, 3> conditioning(Role role) override {
    const RoleCall& call = plan_.roles[static_cast<size_t>(role)];
    auto at = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    return {at(call.text), at(call.pooled), at(call.time_ids)};
  }

  const float* pack_sample(const float* x, bool doubled) override {
    if (!doubled) return x;  // host memory: the UNet reads x in place
    std::copy_n(x, n_, sample_in_.begin());
    std::copy_n(x, n_, sample_in_.begin() + static_cast<long>(n_));
    return sample_in_.data();
  }

  void place_scalars(UnetInputs&, Role, int64_t) override {}  // read by value on the host

  const float* run_unet(InferenceBackend& backend, int unet, const UnetInputs& in) override {
    const auto start = std::chrono::steady_clock::now();
    backend.run_unet(unet, in, unet_out_.data());
    unet_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return unet_out_.data();
  }

  void update(const float* e, bool guided, float g, const float* x, float* out, int64_t n,
              const DdimCoeffs& c, PredictionType prediction) override {
    if (!guided) {
      for (int64_t k = 0; k < n; ++k) out[k] = ddim_update(e[k], x[k], c, prediction);
      return;
    }
    for (int64_t k = 0; k < n; ++k) {
      out[k] = guided_ddim_update(e[k], e[n + k], g, x[k], c, prediction);
    }
  }

  double unet_seconds() const { return unet_seconds_; }

 private:
  const GuidancePlan& plan_;
  size_t n_;
  std::vector<float> sample_in_;  // [x; x], reused every call
  std::vector<float> unet_out_;   // up to 2B outputs, reused every call
  double unet_seconds_ = 0.0;
};

class HostLoopExecutor final : public LoopExecutor {
 public:
  LoopStats run(InferenceBackend& backend, const DdimSchedule& schedule,
                const ReflectionSchedule& reflection, const LoopRequest& request, float* latents,
                const ProgressFn& progress, int lane) override {
    const GuidancePlan plan = plan_guidance(request, BatchPolicy::kPerRole);
    HostMemory memory(plan, request.shape.count());
    GuidedDenoiser model(backend, request, plan, memory, schedule.prediction_type(), lane);
    std::vector<float> x_strong(static_cast<size_t>(request.shape.count()));
    const auto start = std::chrono::steady_clock::now();
    run_reflection_loop(schedule, reflection, request.inversion, model.as_step_fn(), latents,
                        x_strong.data(), progress);
    LoopStats stats;
    stats.loop_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats.unet_calls = model.unet_calls();
    stats.unet_seconds = memory.unet_seconds();
    stats.lane = lane;
    return stats;
  }
};

}  // namespace

std::unique_ptr<LoopExecutor> make_host_executor() { return std::make_unique<HostLoopExecutor>(); }

}  // namespace w2sd
