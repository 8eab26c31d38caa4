#include "w2sd/guided_denoiser.h"

#include <algorithm>

#include "w2sd/status.h"

namespace w2sd {
namespace {

// [first; second] (or second alone) as one contiguous buffer of 2n (or n) floats.
std::vector<float> stacked(const float* first, const float* second, size_t n, bool both) {
  std::vector<float> out;
  out.reserve(both ? 2 * n : n);
  if (both) out.insert(out.end(), first, first + n);
  out.insert(out.end(), second, second + n);
  return out;
}

}  // namespace

std::vector<bool> doubled_batch(const std::vector<bool>& guided) {
  const bool any = std::any_of(guided.begin(), guided.end(), [](bool g) { return g; });
  return std::vector<bool>(guided.size(), any);
}

GuidancePlan plan_guidance(const LoopRequest& request, BatchPolicy policy) {
  const ConditioningShape& cs = request.cond_shape;
  const size_t b = static_cast<size_t>(request.shape.batch);
  std::vector<bool> guided(kNumRoles);
  for (size_t r = 0; r < kNumRoles; ++r) {
    // g == 1 makes e_u + g (e_c - e_u) == e_c: the conditional pass alone is exact.
    guided[r] = request.roles[r].guidance != 1.0f;
  }
  const std::vector<bool> doubled =
      policy == BatchPolicy::kOneBatchForEveryCall ? doubled_batch(guided) : guided;
  GuidancePlan plan;
  for (size_t r = 0; r < kNumRoles; ++r) {
    const RoleConditioning& c = request.roles[r];
    RoleCall& call = plan.roles[r];
    call.guided = guided[r];
    call.doubled = doubled[r];
    plan.any_doubled = plan.any_doubled || call.doubled;
    const float* first = call.guided ? c.uncond.data : c.cond.data;
    const float* first_pooled = call.guided ? c.uncond_pooled.data : c.cond_pooled.data;
    if (cs.text_len > 0) {  // an unconditional denoiser has no text
      call.text = stacked(first, c.cond.data, b * cs.text_len * cs.text_dim, call.doubled);
    }
    if (cs.pooled_dim > 0) {
      call.pooled = stacked(first_pooled, c.cond_pooled.data, b * cs.pooled_dim, call.doubled);
      call.time_ids = stacked(c.time_ids.data, c.time_ids.data, b * cs.time_ids_dim, call.doubled);
    }
  }
  return plan;
}

GuidedDenoiser::GuidedDenoiser(InferenceBackend& backend, const LoopRequest& request,
                               const GuidancePlan& plan, DenoiserMemory& memory,
                               PredictionType prediction, int lane)
    : backend_(backend),
      request_(request),
      plan_(plan),
      memory_(memory),
      prediction_(prediction),
      lane_(lane) {}

void GuidedDenoiser::step(Role role, const float* x, int64_t timestep, const DdimCoeffs& c,
                          float* out) {
  const size_t r = static_cast<size_t>(role);
  const RoleCall& call = plan_.roles[r];
  const RoleConditioning& rc = request_.roles[r];
  const LatentShape& shape = request_.shape;
  const ConditioningShape& cs = request_.cond_shape;
  UnetInputs in;
  in.batch = (call.doubled ? 2 : 1) * shape.batch;
  in.channels = shape.channels;
  in.height = shape.height;
  in.width = shape.width;
  in.timestep = static_cast<float>(timestep);
  in.lora_scale = rc.lora_scale;
  in.lane = lane_;
  const std::array<const float*, 3> rows = memory_.conditioning(role);
  in.text = rows[0];  // unconditional: none
  in.text_len = cs.text_len;
  in.text_dim = cs.text_dim;
  if (cs.pooled_dim > 0) {
    in.text_embeds = rows[1];
    in.pooled_dim = cs.pooled_dim;
    in.time_ids = rows[2];
    in.time_ids_dim = cs.time_ids_dim;
  }
  in.sample = memory_.pack_sample(x, call.doubled);
  memory_.place_scalars(in, role, timestep);
  ++unet_calls_;
  const float* e = memory_.run_unet(backend_, rc.unet, in);
  memory_.update(e, call.guided, rc.guidance, x, out, shape.count(), c, prediction_);
}

GuidedStepFn GuidedDenoiser::as_step_fn() {
  return [this](Role role, const float* x, int64_t t, const DdimCoeffs& c, float* out) {
    step(role, x, t, c, out);
  };
}

}  // namespace w2sd
