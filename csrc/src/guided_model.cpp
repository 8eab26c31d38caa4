#include "w2sd/guided_model.h"

#include <algorithm>
#include <chrono>

#include "w2sd/ddim_math.h"
#include "w2sd/status.h"

namespace w2sd {

namespace {
// [first; second] (or second alone) as one contiguous buffer of 2n (or n) floats.
std::vector<float> stack(const float* first, const float* second, size_t n, bool both) {
  std::vector<float> out(both ? 2 * n : n);
  if (both) {
    std::copy_n(first, n, out.begin());
    std::copy_n(second, n, out.begin() + static_cast<long>(n));
  } else {
    std::copy_n(second, n, out.begin());
  }
  return out;
}
}  // namespace

GuidedModel::GuidedModel(InferenceBackend& backend, LatentShape shape, ConditioningShape cond_shape,
                         const std::array<RoleConditioning, kNumRoles>& roles,
                         PredictionType prediction, int lane)
    : backend_(backend),
      prediction_(prediction),
      lane_(lane),
      shape_(shape),
      cond_shape_(cond_shape) {
  // Engine::run_loop has passed the request through check_conditioning (loop_executor.h).
  const bool added = cond_shape.pooled_dim > 0;
  const size_t b = static_cast<size_t>(shape.batch);
  const size_t text_count = b * static_cast<size_t>(cond_shape.text_len * cond_shape.text_dim);
  const size_t pooled_count = b * static_cast<size_t>(cond_shape.pooled_dim);
  const size_t ids_count = b * static_cast<size_t>(cond_shape.time_ids_dim);
  bool any_batched = false;
  for (int r = 0; r < kNumRoles; ++r) {
    RoleState& state = roles_[static_cast<size_t>(r)];
    state.cond = roles[static_cast<size_t>(r)];
    const RoleConditioning& c = state.cond;
    // g == 1 makes e_u + g (e_c - e_u) == e_c: the conditional pass alone is exact.
    state.batched = c.guidance != 1.0f;
    state.text = stack(c.uncond, c.cond, text_count, state.batched);
    if (added) {
      state.pooled = stack(c.uncond_pooled, c.cond_pooled, pooled_count, state.batched);
      state.time_ids = stack(c.time_ids, c.time_ids, ids_count, state.batched);
    }
    any_batched = any_batched || state.batched;
  }
  const size_t n = static_cast<size_t>(shape.count());
  sample_in_.resize(any_batched ? 2 * n : n);
  unet_out_.resize(any_batched ? 2 * n : n);
}

void GuidedModel::timed_unet(int unet, const UnetInputs& in, float* out) {
  const auto start = std::chrono::steady_clock::now();
  backend_.run_unet(unet, in, out);
  unet_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void GuidedModel::step(Role role, const float* x, int64_t timestep, const DdimCoeffs& c,
                       float* out) {
  RoleState& state = roles_[static_cast<size_t>(role)];
  const int64_t n = shape_.count();
  UnetInputs in;
  in.channels = shape_.channels;
  in.height = shape_.height;
  in.width = shape_.width;
  in.timestep = static_cast<float>(timestep);
  in.lora_scale = state.cond.lora_scale;
  in.lane = lane_;
  in.text = state.text.empty() ? nullptr : state.text.data();  // unconditional: none
  in.text_len = cond_shape_.text_len;
  in.text_dim = cond_shape_.text_dim;
  if (cond_shape_.pooled_dim > 0) {
    in.text_embeds = state.pooled.data();
    in.pooled_dim = cond_shape_.pooled_dim;
    in.time_ids = state.time_ids.data();
    in.time_ids_dim = cond_shape_.time_ids_dim;
  }
  ++unet_calls_;
  const float* e = unet_out_.data();
  if (!state.batched) {
    in.sample = x;
    in.batch = shape_.batch;
    timed_unet(state.cond.unet, in, unet_out_.data());
    for (int64_t k = 0; k < n; ++k) out[k] = ddim_update(e[k], x[k], c, prediction_);
    return;
  }
  std::copy_n(x, n, sample_in_.begin());
  std::copy_n(x, n, sample_in_.begin() + n);
  in.sample = sample_in_.data();
  in.batch = 2 * shape_.batch;
  timed_unet(state.cond.unet, in, unet_out_.data());
  // sample_in_ holds x, so out may alias x.
  const float* xs = sample_in_.data();
  const float g = state.cond.guidance;
  for (int64_t k = 0; k < n; ++k) {
    out[k] = guided_ddim_update(e[k], e[n + k], g, xs[k], c, prediction_);
  }
}

}  // namespace w2sd
