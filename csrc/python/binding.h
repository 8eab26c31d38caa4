// Shared by the binding's files: array types, the one error translation, the UNet shape
// caster, and each file's bind_* function. The binding converts types and releases the GIL;
// checks and defaults live in the core (C++) and in Python.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <exception>
#include <string>

#include "w2sd/ddim_schedule.h"
#include "w2sd/unet_shape.h"

namespace w2sd::python {

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Int64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

// The Python exception for a C++ failure: w2sd.errors.from_core(code, message, param) for
// every C++ exception, the original exception for a Python one that crossed the core.
py::object python_error(const std::exception_ptr& error);
void register_error_translator();

SchedulerConfig make_scheduler_config(int64_t num_train_timesteps, const FloatArray& alphas_cumprod,
                                      bool set_alpha_to_one, int64_t steps_offset,
                                      const std::string& timestep_spacing,
                                      const std::string& prediction_type);

void bind_schedule(py::module_& m);  // schedule.cpp: SchedulerConfig, DdimSchedule, window
void bind_backends(py::module_& m);  // backends.cpp: library, availability, CUDA facts
void bind_engine(py::module_& m);    // engine.cpp: EngineConfig, requests, results, Engine
void bind_testing(py::module_& m);   // testing.cpp: the test-only entry points

}  // namespace w2sd::python

namespace pybind11::detail {
// UnetShape <- {"batch", "channels", "height", "width", "text_len", "text_dim",
// "pooled_dim", "time_ids_dim"} (the last four may be left out: 0).
template <>
struct type_caster<w2sd::UnetShape> {
  PYBIND11_TYPE_CASTER(w2sd::UnetShape, const_name("Mapping[str, int]"));
  static constexpr const char* kNames[] = {"batch",    "channels", "height",     "width",
                                           "text_len", "text_dim", "pooled_dim", "time_ids_dim"};
  static std::array<int64_t*, 8> fields(w2sd::UnetShape& s) {
    return {&s.batch,    &s.channels, &s.height,     &s.width,
            &s.text_len, &s.text_dim, &s.pooled_dim, &s.time_ids_dim};
  }
  bool load(handle src, bool) {
    if (!isinstance<dict>(src)) return false;
    const auto d = reinterpret_borrow<dict>(src);
    const auto f = fields(value);
    for (size_t i = 0; i < f.size(); ++i) {
      if (d.contains(kNames[i])) {
        *f[i] = d[kNames[i]].cast<int64_t>();
      } else if (i < 4) {
        throw value_error(std::string("UNet shape: missing '") + kNames[i] + "'");
      }
    }
    return true;
  }
  static handle cast(w2sd::UnetShape s, return_value_policy, handle) {
    dict d;
    const auto f = fields(s);
    for (size_t i = 0; i < f.size(); ++i) d[kNames[i]] = *f[i];
    return d.release();
  }
};
}  // namespace pybind11::detail
