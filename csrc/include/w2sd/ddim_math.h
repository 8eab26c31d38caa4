// Per-element W2SD scheduler math: classifier-free guidance and the DDIM
// (eta = 0) update shared by DDIMScheduler.step and DDIMInverseScheduler.step
// (diffusers 0.42). Written once for host and device: the CPU path and the
// CUDA kernels call these same functions, so CPU tests cover the GPU math.
#pragma once

#if defined(__CUDACC__)
#define W2SD_HOST_DEVICE __host__ __device__
#else
#define W2SD_HOST_DEVICE
#endif

namespace w2sd {

enum class PredictionType : int { kEpsilon = 0, kVPrediction = 1 };

// Square roots of the two noise levels of one update, computed once per step
// on the host in float32 exactly as diffusers does on 0-d float32 tensors.
struct DdimCoeffs {
  float sqrt_a;       // sqrt(a), a = alpha_bar at the level the sample is at
  float sqrt_1m_a;    // sqrt(1 - a)
  float sqrt_a_next;  // sqrt(a'), a' = alpha_bar at the target level
  float sqrt_1m_a_next;
};

// e = e_u + g * (e_c - e_u)   (diffusers' pipelines, classifier-free guidance)
W2SD_HOST_DEVICE inline float cfg_combine(float e_uncond, float e_cond, float guidance) {
  return e_uncond + guidance * (e_cond - e_uncond);
}

// One DDIM update of one element: to_eps_x0 at level a, then
// sqrt(a') * x0 + sqrt(1 - a') * eps (DDIM paper eq. 12 with sigma = 0).
// The operation order follows diffusers so float32 results match bit for bit
// up to the compiler's contraction choices.
W2SD_HOST_DEVICE inline float ddim_update(float e, float x, const DdimCoeffs& c,
                                          PredictionType prediction) {
  float x0;
  float eps;
  if (prediction == PredictionType::kEpsilon) {
    x0 = (x - c.sqrt_1m_a * e) / c.sqrt_a;
    eps = e;
  } else {
    x0 = c.sqrt_a * x - c.sqrt_1m_a * e;
    eps = c.sqrt_a * e + c.sqrt_1m_a * x;
  }
  return c.sqrt_a_next * x0 + c.sqrt_1m_a_next * eps;
}

// Classifier-free guidance and the DDIM update fused into one pass, as the
// CUDA kernel and the host loop both run it: out = update(e_u + g (e_c - e_u), x).
W2SD_HOST_DEVICE inline float guided_ddim_update(float e_uncond, float e_cond, float guidance,
                                                 float x, const DdimCoeffs& c,
                                                 PredictionType prediction) {
  return ddim_update(cfg_combine(e_uncond, e_cond, guidance), x, c, prediction);
}

}  // namespace w2sd
