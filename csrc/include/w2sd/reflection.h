// The W2SD reflection loop (W2SD paper, Algorithm 1; ../shared/W2SD-SPEC.md
// "The loop"). A plain function of (guided-prediction callback, schedule,
// latents): it does not know which backend evaluates the UNets.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "w2sd/ddim_schedule.h"

namespace w2sd {

enum class Role : int { kStrong = 0, kWeak = 1, kDenoiser = 2 };
constexpr int kNumRoles = 3;

enum class InversionMode : int {
  kOfficial = 0,  // tau_inv(i) = tau_{i+1}, as the authors' released code
  kExact = 1,     // tau_inv(i) = tau_i, textbook DDIM inversion
};

// Which steps reflect. Built from a count lambda (the first lambda steps) or
// from an explicit list of step indices; the last step can never reflect.
class ReflectionSchedule {
 public:
  static ReflectionSchedule first_steps(int64_t num_steps, int64_t reflection_steps);
  static ReflectionSchedule from_indices(int64_t num_steps, const std::vector<int64_t>& indices);

  bool reflects(int64_t i) const { return reflect_.at(static_cast<size_t>(i)); }
  int64_t num_steps() const { return static_cast<int64_t>(reflect_.size()); }
  int64_t num_reflections() const;

 private:
  explicit ReflectionSchedule(std::vector<bool> reflect) : reflect_(std::move(reflect)) {}
  std::vector<bool> reflect_;
};

// One guided DDIM update: out = update(e_role(x, t), x) with coefficients c,
// where e_role is the role's guided model output (epsilon or v). `out` may
// alias `x`. Implementations fuse guidance and update in one pass and own
// where the memory lives (host or device).
using GuidedStepFn = std::function<void(Role role, const float* x, int64_t timestep,
                                        const DdimCoeffs& c, float* out)>;

// Called after each step with (steps done, total); returning false cancels.
using ProgressFn = std::function<bool(int64_t done, int64_t total)>;

// Calls progress(done, total) if set; the one place that throws W2sdError(kCancelled)
// when it returns false.
void report_progress(const ProgressFn& progress, int64_t done, int64_t total);

// Applies one DDIM update elementwise: out = update(e, x) (out may alias x).
void ddim_apply(const float* e, const float* x, float* out, int64_t count, const DdimCoeffs& c,
                PredictionType prediction);

// Runs the W2SD loop in place on `latents` (already scaled by init_noise_sigma),
// using `x_strong` (same size, same memory space) for the strong half of a
// reflection. Throws W2sdError(kCancelled) if progress returns false.
void run_reflection_loop(const DdimSchedule& schedule, const ReflectionSchedule& reflection,
                         InversionMode inversion, const GuidedStepFn& step, float* latents,
                         float* x_strong, const ProgressFn& progress);

}  // namespace w2sd
