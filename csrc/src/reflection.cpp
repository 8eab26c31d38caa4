#include "w2sd/reflection.h"

#include <vector>

#include "w2sd/status.h"

namespace w2sd {

ReflectionSchedule ReflectionSchedule::first_steps(int64_t num_steps, int64_t reflection_steps) {
  W2SD_CHECK_PARAM(num_steps > 0, "num_inference_steps",
                   "num_inference_steps must be positive, got ", num_steps);
  W2SD_CHECK_PARAM(reflection_steps >= 0 && reflection_steps <= num_steps - 1, "reflection_steps",
                   "reflection_steps must be in [0, num_inference_steps - 1] = [0, ", num_steps - 1,
                   "], got ", reflection_steps);
  std::vector<bool> reflect(static_cast<size_t>(num_steps), false);
  for (int64_t i = 0; i < reflection_steps; ++i) reflect[static_cast<size_t>(i)] = true;
  return ReflectionSchedule(std::move(reflect));
}

ReflectionSchedule ReflectionSchedule::from_indices(int64_t num_steps,
                                                    const std::vector<int64_t>& indices) {
  W2SD_CHECK_PARAM(num_steps > 0, "num_inference_steps",
                   "num_inference_steps must be positive, got ", num_steps);
  std::vector<bool> reflect(static_cast<size_t>(num_steps), false);
  for (int64_t i : indices) {
    W2SD_CHECK_PARAM(i >= 0 && i <= num_steps - 2, "reflection_steps", "reflection step index ", i,
                     " is outside [0, num_inference_steps - 2] = [0, ", num_steps - 2, "]");
    W2SD_CHECK_PARAM(!reflect[static_cast<size_t>(i)], "reflection_steps", "reflection step index ",
                     i, " is listed twice");
    reflect[static_cast<size_t>(i)] = true;
  }
  return ReflectionSchedule(std::move(reflect));
}

int64_t ReflectionSchedule::num_reflections() const {
  int64_t n = 0;
  for (bool r : reflect_) n += r ? 1 : 0;
  return n;
}

void ddim_apply(const float* e, const float* x, float* out, int64_t count, const DdimCoeffs& c,
                PredictionType prediction) {
  for (int64_t k = 0; k < count; ++k) out[k] = ddim_update(e[k], x[k], c, prediction);
}

void run_reflection_loop(const DdimSchedule& schedule, const ReflectionSchedule& reflection,
                         InversionMode inversion, const GuidedStepFn& step, float* latents,
                         float* x_strong, const ProgressFn& progress) {
  const int64_t steps = schedule.num_steps();
  W2SD_CHECK_ARG(reflection.num_steps() == steps, "reflection schedule has ",
                 reflection.num_steps(), " steps, the DDIM schedule ", steps);
  float* x = latents;
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = schedule.timestep(i);
    if (reflection.reflects(i)) {
      // Strong denoise t_i -> t_{i+1}, then weak inversion back (the reflection).
      step(Role::kStrong, x, t, schedule.step_coeffs(t), x_strong);
      const int64_t t_inv = inversion == InversionMode::kOfficial ? schedule.timestep(i + 1) : t;
      step(Role::kWeak, x_strong, t, schedule.inverse_step_coeffs(t_inv), x);
    }
    step(Role::kDenoiser, x, t, schedule.step_coeffs(t), x);
    report_progress(progress, i + 1, steps);
  }
}

void report_progress(const ProgressFn& progress, int64_t done, int64_t total) {
  if (progress && !progress(done, total)) {
    detail::throw_error(ErrorCode::kCancelled, "sampling cancelled after step ", done, " of ",
                        total);
  }
}

}  // namespace w2sd
