// One W2SD loop request as the core receives it: latent shape, steps, reflection
// window, inversion mode and each role's conditioning (arrays the caller owns), with
// the checks that make it runnable (every executor relies on them).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "w2sd/inference_backend.h"
#include "w2sd/reflection.h"

namespace w2sd {

struct LatentShape {
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int64_t count() const { return batch * channels * height * width; }
};

// A float32 host array owned by the caller, valid while the request runs (null: absent).
struct HostArray {
  const float* data = nullptr;
  std::vector<int64_t> shape;
  bool present() const { return data != nullptr; }
};

// Per-role conditioning: which UNet, guidance scale and text embeddings
// (cond/uncond: (batch, text_len, text_dim)).
struct RoleConditioning {
  int unet = 0;
  float guidance = 1.0f;
  HostArray cond;
  HostArray uncond;  // may be absent when guidance == 1
  // SDXL only (absent otherwise): pooled embeddings (batch, pooled_dim) and time ids
  // (batch, time_ids_dim), shared by both halves of the CFG batch.
  HostArray cond_pooled;
  HostArray uncond_pooled;
  HostArray time_ids;
  // LoRA scale passed to a UNet that takes one (LoRA exported unfused); 0: LoRA off.
  float lora_scale = 0.0f;
};

// Sizes of the conditioning tensors, common to all roles.
struct ConditioningShape {
  int64_t text_len = 0, text_dim = 0;
  int64_t pooled_dim = 0, time_ids_dim = 0;  // 0 when the UNet takes no added conditions
};

struct LoopRequest {
  LatentShape shape;
  int64_t num_inference_steps = 0;
  // Reflection window: explicit indices if `use_indices`, else the first `reflection_steps`.
  int64_t reflection_steps = 0;
  bool use_indices = false;
  std::vector<int64_t> reflection_indices;
  InversionMode inversion = InversionMode::kOfficial;
  std::array<RoleConditioning, kNumRoles> roles;
  ConditioningShape cond_shape;  // filled by check_conditioning
};

struct LoopStats {
  int64_t unet_calls = 0;
  double loop_seconds = 0.0;
  double unet_seconds = 0.0;  // sum over UNet calls, as measured around the backend
  int lane = 0;
};

// The latent shape of 4-D latents `dims` (throws kInvalidArgument naming latents).
LatentShape latent_shape(const std::vector<int64_t>& dims);

// "official" or "exact" (throws kInvalidArgument naming inversion).
InversionMode parse_inversion(const std::string& name);

// The reflection window of a request (throws kInvalidArgument naming reflection_steps).
ReflectionSchedule reflection_schedule(const LoopRequest& request);

// Throws kInvalidArgument unless every role's conditioning is complete and consistent for
// this backend: a UNet index in range, embeddings of the request's batch and the same sizes
// in every role, uncond ones when guided, and pooled embeddings and time ids when the UNet
// takes added conditions (SDXL). Fills request.cond_shape.
void check_conditioning(LoopRequest& request, const InferenceBackend& backend);

}  // namespace w2sd
