// The per-role guided denoiser, written once for every executor (stable-diffusion.cpp's
// split: sampler = f(denoise, latents, schedule)): which batch each role's UNet call runs
// on, which conditioning rows are stacked, how UnetInputs is filled, and the guided DDIM
// update. An executor supplies only where the buffers live (DenoiserMemory).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "w2sd/ddim_math.h"
#include "w2sd/inference_backend.h"
#include "w2sd/loop_request.h"
#include "w2sd/reflection.h"

namespace w2sd {

// kPerRole: a guided role runs on [uncond; cond] (2B), an unguided one on cond (B).
// kOneBatchForEveryCall: every call runs on the same batch; an unguided role is padded to
// [cond; cond] (its update reads the first half) whenever another role is guided, because
// ONNX Runtime's CUDA convolutions redo their set-up whenever the batch changes.
enum class BatchPolicy { kPerRole, kOneBatchForEveryCall };

// Per role, whether its calls run on the doubled batch under kOneBatchForEveryCall.
std::vector<bool> doubled_batch(const std::vector<bool>& guided);

// One role's UNet call.
struct RoleCall {
  bool guided = false;   // guidance != 1: e = e_u + g (e_c - e_u) over [e_u; e_c]
  bool doubled = false;  // the call's batch is 2B
  // Host images of the conditioning rows: [uncond; cond], [cond; cond] or cond (empty
  // where the UNet takes none).
  std::vector<float> text, pooled, time_ids;
};

struct GuidancePlan {
  std::array<RoleCall, kNumRoles> roles;
  bool any_doubled = false;
};

// The plan of a request that passed check_conditioning.
GuidancePlan plan_guidance(const LoopRequest& request, BatchPolicy policy);

// Where an executor keeps one request's buffers, and the per-element work done there.
class DenoiserMemory {
 public:
  virtual ~DenoiserMemory() = default;
  // Where the UNet reads the role's conditioning rows: {text, pooled, time_ids}, null if none.
  virtual std::array<const float*, 3> conditioning(Role role) = 0;
  // The UNet's sample input: x itself or a copy, or [x; x] when doubled.
  virtual const float* pack_sample(const float* x, bool doubled) = 0;
  // Sets what `in` reads from this memory beside the arrays (device: the timestep and LoRA
  // scale slots).
  virtual void place_scalars(UnetInputs& in, Role role, int64_t timestep) = 0;
  // Runs one UNet call, timed; returns where its output lives.
  virtual const float* run_unet(InferenceBackend& backend, int unet, const UnetInputs& in) = 0;
  // out = DDIM update of x with e = guided ? e_u + g (e_c - e_u) : e (out may alias x).
  virtual void update(const float* unet_out, bool guided, float guidance, const float* x,
                      float* out, int64_t n, const DdimCoeffs& c, PredictionType prediction) = 0;
};

class GuidedDenoiser {
 public:
  // `request` passed check_conditioning; everything given must outlive the denoiser.
  GuidedDenoiser(InferenceBackend& backend, const LoopRequest& request, const GuidancePlan& plan,
                 DenoiserMemory& memory, PredictionType prediction, int lane);

  // out = DDIM update of x with coefficients c and the guided output e_role(x, t).
  void step(Role role, const float* x, int64_t timestep, const DdimCoeffs& c, float* out);
  GuidedStepFn as_step_fn();
  int64_t unet_calls() const { return unet_calls_; }

 private:
  InferenceBackend& backend_;
  const LoopRequest& request_;
  const GuidancePlan& plan_;
  DenoiserMemory& memory_;
  PredictionType prediction_;
  int lane_;
  int64_t unet_calls_ = 0;
};

}  // namespace w2sd
