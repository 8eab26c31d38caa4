#include "w2sd/loop_request.h"

#include "w2sd/status.h"

namespace w2sd {
namespace {

const char* const kRoleNames[kNumRoles] = {"strong", "weak", "denoiser"};

// The sizes after the batch of `array` (empty if absent), checked against `batch` and
// against what other roles gave (`dims`, empty until one did).
void take_dims(const HostArray& array, const char* role, const char* name, size_t ndim,
               int64_t batch, std::vector<int64_t>* dims) {
  if (!array.present()) return;
  W2SD_CHECK_ARG(array.shape.size() == ndim && array.shape[0] == batch, role, " role: ", name,
                 " must be ", ndim, "-D with batch ", batch);
  const std::vector<int64_t> got(array.shape.begin() + 1, array.shape.end());
  if (dims->empty()) *dims = got;
  W2SD_CHECK_ARG(*dims == got, role, " role: ", name, " shape differs from other roles'");
}

ConditioningShape conditioning_shape(const LoopRequest& request) {
  std::vector<int64_t> text, pooled, ids;
  const int64_t b = request.shape.batch;
  for (size_t r = 0; r < kNumRoles; ++r) {
    const RoleConditioning& c = request.roles[r];
    take_dims(c.cond, kRoleNames[r], "cond", 3, b, &text);
    take_dims(c.uncond, kRoleNames[r], "uncond", 3, b, &text);
    take_dims(c.cond_pooled, kRoleNames[r], "cond_pooled", 2, b, &pooled);
    take_dims(c.uncond_pooled, kRoleNames[r], "uncond_pooled", 2, b, &pooled);
    take_dims(c.time_ids, kRoleNames[r], "time_ids", 2, b, &ids);
  }
  // No cond anywhere: an unconditional denoiser.
  ConditioningShape cs;
  cs.text_len = text.empty() ? 0 : text[0];
  cs.text_dim = text.empty() ? 0 : text[1];
  cs.pooled_dim = pooled.empty() ? 0 : pooled[0];
  cs.time_ids_dim = ids.empty() ? 0 : ids[0];
  return cs;
}

}  // namespace

LatentShape latent_shape(const std::vector<int64_t>& dims) {
  W2SD_CHECK_PARAM(dims.size() == 4, "latents", "latents must be 4-D (batch, channels, h, w), got ",
                   dims.size(), "-D");
  return LatentShape{dims[0], dims[1], dims[2], dims[3]};
}

InversionMode parse_inversion(const std::string& name) {
  if (name == "official") return InversionMode::kOfficial;
  if (name == "exact") return InversionMode::kExact;
  detail::throw_param_error("inversion", "inversion: unknown mode '", name,
                            "' (expected 'official' or 'exact')");
}

ReflectionSchedule reflection_schedule(const LoopRequest& request) {
  return request.use_indices ? ReflectionSchedule::from_indices(request.num_inference_steps,
                                                                request.reflection_indices)
                             : ReflectionSchedule::first_steps(request.num_inference_steps,
                                                               request.reflection_steps);
}

void check_conditioning(LoopRequest& request, const InferenceBackend& backend) {
  W2SD_CHECK_PARAM(request.shape.count() > 0, "latents", "latents must not be empty");
  const ConditioningShape cs = conditioning_shape(request);
  request.cond_shape = cs;
  // text_len == text_dim == 0: an unconditional denoiser (no text, no guidance).
  const bool unconditional = cs.text_len == 0 && cs.text_dim == 0;
  W2SD_CHECK_ARG(unconditional || (cs.text_len > 0 && cs.text_dim > 0),
                 "conditioning: text_len and text_dim must both be positive, or both 0");
  const bool added = cs.pooled_dim > 0;
  W2SD_CHECK_ARG(added == (cs.time_ids_dim > 0),
                 "pooled_dim and time_ids_dim must both be set (SDXL) or both be 0");
  for (int r = 0; r < kNumRoles; ++r) {
    const RoleConditioning& c = request.roles[static_cast<size_t>(r)];
    const std::string guidance = std::string(kRoleNames[r]) + "_guidance";
    W2SD_CHECK_ARG(c.unet >= 0 && c.unet < backend.num_unets(), "role ", r, ": UNet index ", c.unet,
                   " out of range");
    if (unconditional) {
      W2SD_CHECK_ARG(!c.cond.present() && !c.uncond.present(), "role ", r,
                     ": embeddings given without a text shape");
      W2SD_CHECK_PARAM(c.guidance == 1.0f, guidance.c_str(), "role ", r,
                       ": an unconditional denoiser has no guidance (it must be 1)");
      continue;
    }
    W2SD_CHECK_ARG(c.cond.present(), "role ", r, ": missing conditional embeddings");
    // g == 1 makes e_u + g (e_c - e_u) == e_c: the conditional pass alone is exact.
    const bool guided = c.guidance != 1.0f;
    W2SD_CHECK_PARAM(!guided || c.uncond.present(), guidance.c_str(), "role ", r,
                     ": guidance != 1 needs unconditional embeddings");
    if (added) {
      W2SD_CHECK_ARG(
          c.cond_pooled.present() && c.time_ids.present() && (!guided || c.uncond_pooled.present()),
          "role ", r, ": this UNet needs pooled text embeddings and time ids");
    }
  }
}

}  // namespace w2sd
