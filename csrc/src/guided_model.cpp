#include "w2sd/guided_model.h"

#include <algorithm>
#include <chrono>

#include "w2sd/ddim_math.h"
#include "w2sd/status.h"

namespace w2sd {

GuidedModel::GuidedModel(InferenceBackend& backend, LatentShape shape, int64_t text_len,
                         int64_t text_dim, const std::array<RoleConditioning, kNumRoles>& roles)
    : backend_(backend), shape_(shape), text_len_(text_len), text_dim_(text_dim) {
  W2SD_CHECK_ARG(shape.count() > 0, "latents must not be empty");
  const size_t text_count = static_cast<size_t>(shape.batch * text_len * text_dim);
  bool any_batched = false;
  for (int r = 0; r < kNumRoles; ++r) {
    RoleState& state = roles_[static_cast<size_t>(r)];
    state.cond = roles[static_cast<size_t>(r)];
    W2SD_CHECK_ARG(state.cond.unet >= 0 && state.cond.unet < backend.num_unets(), "role ", r,
                   ": UNet index ", state.cond.unet, " out of range");
    W2SD_CHECK_ARG(state.cond.cond != nullptr, "role ", r, ": missing conditional embeddings");
    // g == 1 makes e_u + g (e_c - e_u) == e_c: the conditional pass alone is exact.
    state.batched = state.cond.guidance != 1.0f;
    if (state.batched) {
      W2SD_CHECK_ARG(state.cond.uncond != nullptr, "role ", r,
                     ": guidance != 1 needs unconditional embeddings");
      state.text.resize(2 * text_count);
      std::copy_n(state.cond.uncond, text_count, state.text.begin());
      std::copy_n(state.cond.cond, text_count, state.text.begin() + static_cast<long>(text_count));
      any_batched = true;
    } else {
      state.text.assign(state.cond.cond, state.cond.cond + text_count);
    }
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

void GuidedModel::predict(Role role, const float* x, int64_t timestep, float* out) {
  RoleState& state = roles_[static_cast<size_t>(role)];
  const int64_t n = shape_.count();
  UnetInputs in;
  in.channels = shape_.channels;
  in.height = shape_.height;
  in.width = shape_.width;
  in.timestep = static_cast<float>(timestep);
  in.text = state.text.data();
  in.text_len = text_len_;
  in.text_dim = text_dim_;
  ++unet_calls_;
  if (!state.batched) {
    in.sample = x;
    in.batch = shape_.batch;
    timed_unet(state.cond.unet, in, out);
    return;
  }
  std::copy_n(x, n, sample_in_.begin());
  std::copy_n(x, n, sample_in_.begin() + n);
  in.sample = sample_in_.data();
  in.batch = 2 * shape_.batch;
  timed_unet(state.cond.unet, in, unet_out_.data());
  const float* e_uncond = unet_out_.data();
  const float* e_cond = unet_out_.data() + n;
  const float g = state.cond.guidance;
  for (int64_t k = 0; k < n; ++k) out[k] = cfg_combine(e_uncond[k], e_cond[k], g);
}

}  // namespace w2sd
