// The scheduler config, the DDIM schedule and the reflection window.
#include <pybind11/stl.h>

#include <variant>

#include "binding.h"
#include "w2sd/ddim_math.h"
#include "w2sd/reflection.h"
#include "w2sd/status.h"

namespace w2sd::python {
namespace {

FloatArray apply_update(const DdimSchedule& s, const FloatArray& e, const FloatArray& x,
                        const DdimCoeffs& c) {
  W2SD_CHECK_ARG(e.size() == x.size(), "model_output and sample must have the same size");
  FloatArray out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  ddim_apply(e.data(), x.data(), out.mutable_data(), x.size(), c, s.prediction_type());
  return out;
}

std::vector<int64_t> reflection_window(int64_t num_inference_steps,
                                       const std::variant<int64_t, std::vector<int64_t>>& r) {
  const ReflectionSchedule s =
      std::holds_alternative<int64_t>(r)
          ? ReflectionSchedule::first_steps(num_inference_steps, std::get<int64_t>(r))
          : ReflectionSchedule::from_indices(num_inference_steps, std::get<1>(r));
  std::vector<int64_t> steps;
  for (int64_t i = 0; i < s.num_steps(); ++i) {
    if (s.reflects(i)) steps.push_back(i);
  }
  return steps;
}

}  // namespace

SchedulerConfig make_scheduler_config(int64_t num_train_timesteps, const FloatArray& alphas_cumprod,
                                      bool set_alpha_to_one, int64_t steps_offset,
                                      const std::string& timestep_spacing,
                                      const std::string& prediction_type) {
  SchedulerConfig sc;
  sc.num_train_timesteps = num_train_timesteps;
  sc.alphas_cumprod.assign(alphas_cumprod.data(), alphas_cumprod.data() + alphas_cumprod.size());
  sc.set_alpha_to_one = set_alpha_to_one;
  sc.steps_offset = steps_offset;
  sc.timestep_spacing = parse_timestep_spacing(timestep_spacing);
  sc.prediction_type = parse_prediction_type(prediction_type);
  return sc;
}

void bind_schedule(py::module_& m) {
  py::class_<SchedulerConfig>(m, "SchedulerConfig",
                              "The parts of a diffusers scheduler_config the DDIM math uses.")
      .def(py::init(&make_scheduler_config), py::arg("num_train_timesteps"),
           py::arg("alphas_cumprod"), py::arg("set_alpha_to_one"), py::arg("steps_offset"),
           py::arg("timestep_spacing"), py::arg("prediction_type"));

  py::class_<DdimSchedule>(m, "DdimSchedule",
                           "DDIM timesteps and (inverse) steps, the math the loop runs.")
      .def(py::init([](int64_t num_train_timesteps, const FloatArray& alphas_cumprod,
                       bool set_alpha_to_one, int64_t steps_offset,
                       const std::string& timestep_spacing, const std::string& prediction_type,
                       int64_t num_inference_steps) {
             return DdimSchedule(
                 make_scheduler_config(num_train_timesteps, alphas_cumprod, set_alpha_to_one,
                                       steps_offset, timestep_spacing, prediction_type),
                 num_inference_steps);
           }),
           py::arg("num_train_timesteps"), py::arg("alphas_cumprod"), py::arg("set_alpha_to_one"),
           py::arg("steps_offset"), py::arg("timestep_spacing"), py::arg("prediction_type"),
           py::arg("num_inference_steps"))
      .def_property_readonly("timesteps", &DdimSchedule::timesteps)
      .def(
          "step",
          [](const DdimSchedule& s, const FloatArray& e, int64_t t, const FloatArray& x) {
            return apply_update(s, e, x, s.step_coeffs(t));
          },
          py::arg("model_output"), py::arg("timestep"), py::arg("sample"),
          "DDIMScheduler.step(model_output, timestep, sample).prev_sample")
      .def(
          "inverse_step",
          [](const DdimSchedule& s, const FloatArray& e, int64_t t, const FloatArray& x) {
            return apply_update(s, e, x, s.inverse_step_coeffs(t));
          },
          py::arg("model_output"), py::arg("timestep"), py::arg("sample"),
          "DDIMInverseScheduler.step(model_output, timestep, sample).prev_sample");

  m.def("reflection_window", &reflection_window, py::arg("num_inference_steps"),
        py::arg("reflection"),
        "The step indices that reflect, for lambda (an int) or an explicit index list; raises "
        "InvalidArgumentError for a window the loop cannot run.");
}

}  // namespace w2sd::python
