// Classifier-free guidance around a backend's UNets: for a role it batches the
// unconditional and conditional passes into one call of batch 2B (or runs the
// conditional pass alone when the guidance is exactly 1) and combines them.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "w2sd/ddim_math.h"
#include "w2sd/inference_backend.h"
#include "w2sd/reflection.h"

namespace w2sd {

struct LatentShape {
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int64_t count() const { return batch * channels * height * width; }
};

// Per-role conditioning: which UNet, guidance scale and text embeddings
// (each (batch, text_len, text_dim), host memory, valid while the model lives).
struct RoleConditioning {
  int unet = 0;
  float guidance = 1.0f;
  const float* cond = nullptr;
  const float* uncond = nullptr;  // may be null when guidance == 1
  // SDXL only (null otherwise): pooled embeddings (batch, pooled_dim) and
  // time ids (batch, time_ids_dim), shared by both halves of the CFG batch.
  const float* cond_pooled = nullptr;
  const float* uncond_pooled = nullptr;
  const float* time_ids = nullptr;
  // LoRA scale passed to a UNet that takes one (LoRA exported unfused); 0: LoRA off.
  float lora_scale = 0.0f;
};

// Sizes of the conditioning tensors, common to all roles.
struct ConditioningShape {
  int64_t text_len = 0, text_dim = 0;
  int64_t pooled_dim = 0, time_ids_dim = 0;  // 0 when the UNet takes no added conditions
};

// Expects conditioning that passed check_conditioning (loop_executor.h).
class GuidedModel {
 public:
  GuidedModel(InferenceBackend& backend, LatentShape shape, ConditioningShape cond_shape,
              const std::array<RoleConditioning, kNumRoles>& roles, PredictionType prediction,
              int lane = 0);

  // out = DDIM update of x with coefficients c and the guided output e_role(x, t),
  // guidance and update fused in one pass (host memory; out may alias x).
  void step(Role role, const float* x, int64_t timestep, const DdimCoeffs& c, float* out);
  int64_t unet_calls() const { return unet_calls_; }
  // Wall time spent inside the backend's UNet calls.
  double unet_seconds() const { return unet_seconds_; }

 private:
  void timed_unet(int unet, const UnetInputs& in, float* out);

  struct RoleState {
    RoleConditioning cond;
    bool batched = false;         // guidance != 1: one call with batch 2B
    std::vector<float> text;      // [uncond; cond] or cond, built once
    std::vector<float> pooled;    // likewise, SDXL only
    std::vector<float> time_ids;  // [ids; ids] or ids, SDXL only
  };
  InferenceBackend& backend_;
  PredictionType prediction_;
  int lane_;
  LatentShape shape_;
  ConditioningShape cond_shape_;
  std::array<RoleState, kNumRoles> roles_;
  std::vector<float> sample_in_;  // 2B latents, reused every call
  std::vector<float> unet_out_;   // 2B outputs, reused every call
  int64_t unet_calls_ = 0;
  double unet_seconds_ = 0.0;
};

}  // namespace w2sd
