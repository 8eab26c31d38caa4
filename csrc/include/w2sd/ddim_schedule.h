// DDIM timestep schedule and per-step noise levels, following diffusers'
// DDIMScheduler.set_timesteps / step and DDIMInverseScheduler.step (0.42).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "w2sd/ddim_math.h"

namespace w2sd {

enum class TimestepSpacing { kLeading, kTrailing, kLinspace };

// The parts of a diffusers scheduler_config the DDIM math depends on.
struct SchedulerConfig {
  int64_t num_train_timesteps = 1000;
  std::vector<float> alphas_cumprod;  // length num_train_timesteps, float32 as diffusers
  bool set_alpha_to_one = false;
  int64_t steps_offset = 0;
  TimestepSpacing timestep_spacing = TimestepSpacing::kLeading;
  PredictionType prediction_type = PredictionType::kEpsilon;
};

TimestepSpacing parse_timestep_spacing(const std::string& name);
PredictionType parse_prediction_type(const std::string& name);

class DdimSchedule {
 public:
  DdimSchedule(SchedulerConfig config, int64_t num_inference_steps);

  int64_t num_steps() const { return static_cast<int64_t>(timesteps_.size()); }
  const std::vector<int64_t>& timesteps() const { return timesteps_; }
  int64_t timestep(int64_t i) const { return timesteps_.at(static_cast<size_t>(i)); }
  PredictionType prediction_type() const { return config_.prediction_type; }

  // Coefficients of DDIMScheduler.step(e, t, x): from level t to t - delta.
  DdimCoeffs step_coeffs(int64_t t) const;
  // Coefficients of DDIMInverseScheduler.step(e, t, x): from level
  // min(t - delta, N - 1) up to level t.
  DdimCoeffs inverse_step_coeffs(int64_t t) const;

 private:
  float alpha_at(int64_t t) const;  // alpha_bar[t], or the boundary value for t < 0

  SchedulerConfig config_;
  int64_t delta_;  // N // T, diffusers' step distance
  std::vector<int64_t> timesteps_;
};

// The level-pair square roots, in float32 as diffusers computes them.
DdimCoeffs make_coeffs(float a, float a_next);

}  // namespace w2sd
