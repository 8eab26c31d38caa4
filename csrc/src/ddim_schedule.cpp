#include "w2sd/ddim_schedule.h"

#include <algorithm>
#include <cmath>

#include "w2sd/status.h"

namespace w2sd {

TimestepSpacing parse_timestep_spacing(const std::string& name) {
  if (name == "leading") return TimestepSpacing::kLeading;
  if (name == "trailing") return TimestepSpacing::kTrailing;
  if (name == "linspace") return TimestepSpacing::kLinspace;
  detail::throw_error(ErrorCode::kInvalidArgument, "timestep_spacing: unknown value '", name,
                      "' (expected leading, trailing or linspace)");
}

PredictionType parse_prediction_type(const std::string& name) {
  if (name == "epsilon") return PredictionType::kEpsilon;
  if (name == "v_prediction") return PredictionType::kVPrediction;
  detail::throw_error(ErrorCode::kInvalidArgument, "prediction_type: unsupported value '", name,
                      "' (expected epsilon or v_prediction)");
}

DdimCoeffs make_coeffs(float a, float a_next) {
  // torch: alpha ** 0.5 and (1 - alpha) ** 0.5 on float32 scalars.
  return DdimCoeffs{std::sqrt(a), std::sqrt(1.0f - a), std::sqrt(a_next), std::sqrt(1.0f - a_next)};
}

DdimSchedule::DdimSchedule(SchedulerConfig config, int64_t num_inference_steps)
    : config_(std::move(config)) {
  const int64_t n = config_.num_train_timesteps;
  const int64_t t_count = num_inference_steps;
  W2SD_CHECK_ARG(n > 0, "num_train_timesteps must be positive, got ", n);
  W2SD_CHECK_ARG(static_cast<int64_t>(config_.alphas_cumprod.size()) == n, "alphas_cumprod has ",
                 config_.alphas_cumprod.size(), " entries, expected ", n);
  W2SD_CHECK_PARAM(t_count > 0, "num_inference_steps", "num_inference_steps must be positive, got ",
                   t_count);
  W2SD_CHECK_PARAM(t_count <= n, "num_inference_steps", "num_inference_steps (", t_count,
                   ") cannot exceed num_train_timesteps (", n, ")");
  delta_ = n / t_count;
  timesteps_.resize(static_cast<size_t>(t_count));
  switch (config_.timestep_spacing) {
    case TimestepSpacing::kLinspace:
      // np.linspace(0, N - 1, T).round()[::-1]
      for (int64_t i = 0; i < t_count; ++i) {
        const double step = t_count == 1 ? 0.0 : double(n - 1) / double(t_count - 1);
        const double v = double(i) * step;
        timesteps_[static_cast<size_t>(t_count - 1 - i)] = static_cast<int64_t>(
            std::nearbyint(i == t_count - 1 && t_count > 1 ? double(n - 1) : v));
      }
      break;
    case TimestepSpacing::kLeading:
      // (np.arange(0, T) * (N // T)).round()[::-1] + steps_offset
      for (int64_t i = 0; i < t_count; ++i) {
        timesteps_[static_cast<size_t>(t_count - 1 - i)] = i * delta_ + config_.steps_offset;
      }
      break;
    case TimestepSpacing::kTrailing: {
      // np.round(np.arange(N, 0, -N / T)) - 1, length ceil(N / (N / T)) as numpy computes it
      const double ratio = static_cast<double>(n) / static_cast<double>(t_count);
      const auto len = static_cast<int64_t>(std::ceil((0.0 - double(n)) / -ratio));
      W2SD_CHECK_INTERNAL(len == t_count, "trailing spacing produced ", len, " timesteps");
      for (int64_t i = 0; i < t_count; ++i) {
        timesteps_[static_cast<size_t>(i)] =
            static_cast<int64_t>(std::nearbyint(double(n) + double(i) * -ratio)) - 1;
      }
      break;
    }
  }
}

float DdimSchedule::alpha_at(int64_t t) const {
  if (t >= 0) {
    W2SD_CHECK_INTERNAL(t < config_.num_train_timesteps, "timestep ", t, " out of range");
    return config_.alphas_cumprod[static_cast<size_t>(t)];
  }
  // DDIMScheduler.final_alpha_cumprod / DDIMInverseScheduler.initial_alpha_cumprod
  return config_.set_alpha_to_one ? 1.0f : config_.alphas_cumprod[0];
}

DdimCoeffs DdimSchedule::step_coeffs(int64_t t) const {
  return make_coeffs(alpha_at(t), alpha_at(t - delta_));
}

DdimCoeffs DdimSchedule::inverse_step_coeffs(int64_t t) const {
  const int64_t from = std::min(t - delta_, config_.num_train_timesteps - 1);
  return make_coeffs(alpha_at(from), alpha_at(t));
}

}  // namespace w2sd
