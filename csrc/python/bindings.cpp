// pybind11 binding of the C++ core: type conversion, the GIL released around
// long work, and W2sdError translated into w2sd.errors in one place.
// Defaults, validation of user input and tokenisation live in Python.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <map>

#include "w2sd/backend_factory.h"
#include "w2sd/ddim_math.h"
#include "w2sd/device_workspace.h"
#include "w2sd/engine.h"
#include "w2sd/gpu_options.h"
#include "w2sd/lane_scheduler.h"
#include "w2sd/ort_library.h"
#include "w2sd/page_trimmer.h"
#include "w2sd/reflection.h"
#include "w2sd/status.h"
#include "w2sd/unet_shape.h"
#ifdef W2SD_WITH_CUDA
#include "w2sd/cuda/kernels.h"
#endif

namespace py = pybind11;
using namespace w2sd;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Int64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

const char* error_class(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "InvalidArgumentError";
    case ErrorCode::kNotFound:
      return "NotFoundError";
    case ErrorCode::kBackend:
      return "BackendError";
    case ErrorCode::kCancelled:
      return "CancelledError";
    case ErrorCode::kInternal:
      return "W2SDError";
  }
  return "W2SDError";
}

// The one translation of C++ failures into Python exceptions, used by pybind's
// translator (raised errors) and by run_many (errors returned per request). A
// Python exception that crossed the core (raised by a progress callback) comes
// back as itself.
py::object python_error(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (py::error_already_set& e) {
    return e.value();
  } catch (const W2sdError& e) {
    return py::module_::import("w2sd.errors").attr(error_class(e.code()))(e.what());
  } catch (const std::exception& e) {
    return py::module_::import("w2sd.errors").attr("W2SDError")(e.what());
  } catch (...) {
    return py::module_::import("w2sd.errors").attr("W2SDError")("unknown C++ exception");
  }
}

py::array_t<float> to_numpy(HostTensor&& t) {
  auto* owned = new std::vector<float>(std::move(t.data));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>(t.shape, owned->data(), free_when_done);
}

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

FloatArray apply_update(const DdimSchedule& s, const FloatArray& e, const FloatArray& x,
                        const DdimCoeffs& c) {
  W2SD_CHECK_ARG(e.size() == x.size(), "model_output and sample must have the same size");
  FloatArray out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  ddim_apply(e.data(), x.data(), out.mutable_data(), x.size(), c, s.prediction_type());
  return out;
}

std::unique_ptr<Engine> make_ort_engine(
    const std::string& library_path, const std::vector<std::string>& unet_paths,
    const std::vector<std::string>& unet_inputs, const std::vector<std::string>& text_encoder_paths,
    const std::vector<std::vector<std::string>>& text_encoder_outputs,
    const std::string& vae_decoder_path, int64_t num_train_timesteps, FloatArray alphas_cumprod,
    bool set_alpha_to_one, int64_t steps_offset, const std::string& timestep_spacing,
    const std::string& prediction_type, int intra_op_threads, int graph_optimization_level,
    const std::string& provider, int device_id, int lanes,
    const std::map<std::string, std::string>& provider_options, bool memory_arena,
    const std::map<std::string, std::map<std::string, std::string>>& model_provider_options,
    int unet_shape_sessions, const std::vector<std::pair<int, UnetShape>>& warm_unet_shapes) {
  EngineConfig config;
  config.provider = provider;
  config.scheduler = make_scheduler_config(num_train_timesteps, alphas_cumprod, set_alpha_to_one,
                                           steps_offset, timestep_spacing, prediction_type);
  config.models.library_path = library_path;
  config.models.unet_paths = unet_paths;
  config.models.unet_names.inputs = unet_inputs;
  config.models.text_encoder_paths = text_encoder_paths;
  for (const auto& outputs : text_encoder_outputs) {
    config.models.text_encoder_names.push_back(OrtModelNames{{"input_ids"}, outputs});
  }
  config.models.vae_decoder_path = vae_decoder_path;
  config.models.intra_op_threads = intra_op_threads;
  config.models.graph_optimization_level = graph_optimization_level;
  config.models.cpu_memory_arena = memory_arena;
  config.models.unet_shape_sessions = unet_shape_sessions;
  config.models.warm_unet_shapes = warm_unet_shapes;
  config.device_id = device_id;
  config.lanes = lanes;
  config.provider_options.assign(provider_options.begin(), provider_options.end());
  for (const auto& kv : model_provider_options) {
    config.model_provider_options[kv.first].assign(kv.second.begin(), kv.second.end());
  }
  py::gil_scoped_release release;  // session creation loads weights
  return make_engine(config);
}

}  // namespace

namespace pybind11::detail {
// UnetShape <- {"batch", "channels", "height", "width", "text_len", "text_dim",
// "pooled_dim", "time_ids_dim"} (the last four may be left out: 0).
template <>
struct type_caster<UnetShape> {
  PYBIND11_TYPE_CASTER(UnetShape, const_name("Mapping[str, int]"));
  static constexpr const char* kNames[] = {"batch",    "channels", "height",     "width",
                                           "text_len", "text_dim", "pooled_dim", "time_ids_dim"};
  static std::array<int64_t*, 8> fields(UnetShape& s) {
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
  static handle cast(UnetShape s, return_value_policy, handle) {
    dict d;
    const auto f = fields(s);
    for (size_t i = 0; i < f.size(); ++i) d[kNames[i]] = *f[i];
    return d.release();
  }
};
}  // namespace pybind11::detail

namespace {

InversionMode parse_inversion(const std::string& name) {
  if (name == "official") return InversionMode::kOfficial;
  if (name == "exact") return InversionMode::kExact;
  detail::throw_error(ErrorCode::kInvalidArgument, "inversion: unknown mode '", name,
                      "' (expected 'official' or 'exact')");
}

// A loop request from Python: latents (B, C, h, w), steps, reflection (an int
// or a list of step indices), inversion mode and three role dicts (strong,
// weak, denoiser) with keys unet, guidance, lora_scale (None: 0), cond, uncond and, for SDXL,
// cond_pooled, uncond_pooled, time_ids (None where unused). Arrays the request
// points into are appended to keep_alive.
LoopRequest parse_request(const FloatArray& latents, int64_t num_inference_steps,
                          const py::object& reflection, const std::string& inversion,
                          const py::list& roles, std::vector<FloatArray>& keep_alive) {
  W2SD_CHECK_ARG(latents.ndim() == 4, "latents must be 4-D (batch, channels, h, w), got ",
                 latents.ndim(), "-D");
  LoopRequest req;
  req.shape = LatentShape{latents.shape(0), latents.shape(1), latents.shape(2), latents.shape(3)};
  req.num_inference_steps = num_inference_steps;
  if (py::isinstance<py::int_>(reflection)) {
    req.reflection_steps = reflection.cast<int64_t>();
  } else {
    req.use_indices = true;
    req.reflection_indices = reflection.cast<std::vector<int64_t>>();
  }
  req.inversion = parse_inversion(inversion);
  W2SD_CHECK_ARG(roles.size() == kNumRoles, "roles must hold 3 entries (strong, weak, denoiser)");
  const int64_t batch = req.shape.batch;
  // Takes role[key] as a float array of shape (batch, dims...), or null if None/absent.
  auto take = [&](const py::dict& role, const char* key, size_t r, int ndim,
                  std::vector<int64_t>* dims) -> const float* {
    if (!role.contains(key) || role[key].is_none()) return nullptr;
    auto a = role[key].cast<FloatArray>();
    W2SD_CHECK_ARG(a.ndim() == ndim && a.shape(0) == batch, "roles[", r, "]['", key, "'] must be ",
                   ndim, "-D with batch ", batch);
    std::vector<int64_t> got(a.shape() + 1, a.shape() + a.ndim());
    if (dims->empty()) *dims = got;
    W2SD_CHECK_ARG(*dims == got, "roles[", r, "]['", key, "'] shape differs from other roles'");
    keep_alive.push_back(a);
    return a.data();
  };
  std::vector<int64_t> text_dims, pooled_dims, ids_dims;
  for (size_t r = 0; r < kNumRoles; ++r) {
    auto role = roles[r].cast<py::dict>();
    RoleConditioning& rc = req.roles[r];
    rc.unet = role["unet"].cast<int>();
    rc.guidance = role["guidance"].cast<float>();
    if (role.contains("lora_scale") && !role["lora_scale"].is_none()) {
      rc.lora_scale = role["lora_scale"].cast<float>();
    }
    rc.cond = take(role, "cond", r, 3, &text_dims);
    rc.uncond = take(role, "uncond", r, 3, &text_dims);
    rc.cond_pooled = take(role, "cond_pooled", r, 2, &pooled_dims);
    rc.uncond_pooled = take(role, "uncond_pooled", r, 2, &pooled_dims);
    rc.time_ids = take(role, "time_ids", r, 2, &ids_dims);
  }
  // No 'cond' anywhere: an unconditional denoiser (check_conditioning decides).
  req.cond_shape.text_len = text_dims.empty() ? 0 : text_dims[0];
  req.cond_shape.text_dim = text_dims.empty() ? 0 : text_dims[1];
  req.cond_shape.pooled_dim = pooled_dims.empty() ? 0 : pooled_dims[0];
  req.cond_shape.time_ids_dim = ids_dims.empty() ? 0 : ids_dims[0];
  return req;
}

ProgressFn wrap_progress(const py::object& progress) {
  if (progress.is_none()) return {};
  return [progress](int64_t done, int64_t total) {
    py::gil_scoped_acquire acquire;
    py::object keep_going = progress(done, total);
    return keep_going.is_none() || keep_going.cast<bool>();
  };
}

py::dict stats_dict(const LoopStats& stats) {
  py::dict s;
  s["unet_calls"] = stats.unet_calls;
  s["loop_s"] = stats.loop_seconds;
  s["unet_s"] = stats.unet_seconds;
  s["lane"] = stats.lane;
  return s;
}

FloatArray latents_array(const LatentShape& shape, const std::vector<float>& x) {
  FloatArray out({shape.batch, shape.channels, shape.height, shape.width});
  std::copy(x.begin(), x.end(), out.mutable_data());
  return out;
}

py::tuple run_loop(Engine& engine, FloatArray latents, int64_t num_inference_steps,
                   py::object reflection, const std::string& inversion, py::list roles,
                   py::object progress) {
  std::vector<FloatArray> keep_alive;
  const LoopRequest req =
      parse_request(latents, num_inference_steps, reflection, inversion, roles, keep_alive);
  std::vector<float> x(latents.data(), latents.data() + latents.size());
  const ProgressFn progress_fn = wrap_progress(progress);
  LoopStats stats;
  {
    py::gil_scoped_release release;
    stats = engine.run_loop(req, x.data(), progress_fn);
  }
  return py::make_tuple(latents_array(req.shape, x), stats_dict(stats));
}

// requests: list of dicts with keys latents, num_inference_steps, reflection,
// inversion, roles, progress. Returns one dict per request: ok, latents or
// error (the exception object sample() would raise), lane, start_seq, end_seq
// and the loop stats.
py::list run_many(Engine& engine, py::list requests, int lanes) {
  std::vector<FloatArray> keep_alive;
  std::vector<LoopRequest> reqs;
  std::vector<std::vector<float>> xs;
  std::vector<ProgressFn> progress;
  for (const auto& item : requests) {
    auto d = item.cast<py::dict>();
    auto latents = d["latents"].cast<FloatArray>();
    keep_alive.push_back(latents);
    reqs.push_back(parse_request(latents, d["num_inference_steps"].cast<int64_t>(), d["reflection"],
                                 d["inversion"].cast<std::string>(), d["roles"].cast<py::list>(),
                                 keep_alive));
    xs.emplace_back(latents.data(), latents.data() + latents.size());
    progress.push_back(d.contains("progress") ? wrap_progress(d["progress"]) : ProgressFn{});
  }
  std::vector<float*> ptrs;
  for (auto& x : xs) ptrs.push_back(x.data());
  std::vector<LoopStats> stats;
  std::vector<LaneJobResult> results;
  {
    py::gil_scoped_release release;
    results = engine.run_many(reqs, ptrs, progress, lanes, &stats);
  }
  py::list out;
  for (size_t j = 0; j < results.size(); ++j) {
    const LaneJobResult& r = results[j];
    py::dict d = stats_dict(stats[j]);
    d["ok"] = r.ok;
    d["lane"] = r.lane;
    d["start_seq"] = r.start_seq;
    d["end_seq"] = r.end_seq;
    if (r.ok) {
      d["latents"] = latents_array(reqs[j].shape, xs[j]);
    } else {
      d["error"] = python_error(r.exception);
    }
    out.append(d);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "w2sd C++ core: DDIM math, the W2SD reflection loop, ONNX Runtime backend";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const W2sdError&) {
      py::object error = python_error(std::current_exception());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    }
  });

  m.def(
      "load_ort_library",
      [](const std::string& path) {
        const OrtLibraryInfo& info = load_ort_library(path);
        return py::make_tuple(info.path, info.version, info.api_version);
      },
      py::arg("path"), "Load ONNX Runtime's shared library; returns (path, version, api_version).");

  py::class_<DdimSchedule>(m, "DdimSchedule",
                           "DDIM timesteps and (inverse) steps, the math the loop runs.")
      .def(
          py::init([](int64_t num_train_timesteps, FloatArray alphas_cumprod, bool set_alpha_to_one,
                      int64_t steps_offset, const std::string& timestep_spacing,
                      const std::string& prediction_type, int64_t num_inference_steps) {
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
          [](const DdimSchedule& s, FloatArray e, int64_t t, FloatArray x) {
            return apply_update(s, e, x, s.step_coeffs(t));
          },
          py::arg("model_output"), py::arg("timestep"), py::arg("sample"),
          "DDIMScheduler.step(model_output, timestep, sample).prev_sample")
      .def(
          "inverse_step",
          [](const DdimSchedule& s, FloatArray e, int64_t t, FloatArray x) {
            return apply_update(s, e, x, s.inverse_step_coeffs(t));
          },
          py::arg("model_output"), py::arg("timestep"), py::arg("sample"),
          "DDIMInverseScheduler.step(model_output, timestep, sample).prev_sample");

  m.def(
      "cuda_compiled",
      [] {
#ifdef W2SD_WITH_CUDA
        return true;
#else
        return false;
#endif
      },
      "Whether this build has the CUDA kernels and the CUDA/TensorRT backend.");

  m.def(
      "cuda_device_count",
      [] {
#ifdef W2SD_WITH_CUDA
        return cuda::device_count();
#else
        return 0;
#endif
      },
      "CUDA devices visible to this build (0 without CUDA support, driver or device).");

  m.def(
      "backend_availability",
      [](const std::string& backend) {
        const BackendAvailability a = backend_availability(backend);
        return py::make_tuple(a.available, a.reason);
      },
      py::arg("backend"),
      "(available, reason) for backend 'cpu', 'cuda' or 'tensorrt' (load_ort_library first).");

  m.def(
      "probe_gpu_provider",
      [](const std::string& provider, int device_id) {
        py::gil_scoped_release release;
        return probe_gpu_provider(provider, device_id);
      },
      py::arg("provider"), py::arg("device_id") = 0,
      "Append the 'cuda' or 'tensorrt' execution provider to a session's options: '' if it "
      "loads here, else ONNX Runtime's reason (load_ort_library first).");

  m.def(
      "gpu_provider_options",
      [](const std::string& provider, int device_id, const OptionList& common,
         const OptionList& model) {
        W2SD_CHECK_ARG(provider == "cuda" || provider == "tensorrt",
                       "provider: 'cuda' or 'tensorrt'");
        if (provider == "cuda") {
          return cuda_provider_options(device_id, merge_options(common, model));
        }
        return tensorrt_provider_options(device_id, common, model);
      },
      py::arg("provider"), py::arg("device_id"), py::arg("common"), py::arg("model"),
      "The option key/value pairs a GPU session of this provider is given, in order.");

  m.attr("GPU_INTRA_OP_THREADS") = kGpuIntraOpThreads;

  m.def(
      "plan_workspace",
      [](const std::vector<size_t>& sizes) {
        const WorkspaceLayout l = plan_workspace(sizes);
        return py::make_tuple(l.offsets, l.bytes);
      },
      py::arg("sizes"),
      "The device loop's buffer layout: (byte offsets, total bytes) for these sizes.");

  m.def("slot_table", &slot_table, py::arg("values"),
        "A device slot table's host image: values[i] at float index i * SLOT_FLOATS.");
  m.def("grown_capacity", &grown_capacity, py::arg("capacity"), py::arg("needed"));
  m.def("doubled_batch", &doubled_batch, py::arg("guided"),
        "Per role: whether the device loop runs its UNet calls on the doubled batch.");
  m.def("reshape_input_option", &reshape_input_option, py::arg("names"), py::arg("shape"),
        "The OpenVINO EP's reshape_input value fixing a UNet's inputs `names` to `shape`.");
  m.def("trim_mapped_files", &trim_mapped_files, py::arg("dirs"),
        "Drop the resident pages of read-only file mappings under these folders (the "
        "OpenVINO backend's weights); returns the bytes advised.");
  m.attr("DEVICE_ALIGNMENT") = kDeviceAlignment;
  m.attr("SLOT_FLOATS") = kSlotFloats;

  py::class_<LanePool>(m, "LanePool", "Lanes checked out one caller at a time.")
      .def(py::init<int>(), py::arg("lanes"))
      .def("acquire", &LanePool::acquire, py::call_guard<py::gil_scoped_release>())
      .def("release", &LanePool::release, py::arg("lane"))
      .def_property_readonly("size", &LanePool::size)
      .def_property_readonly("in_use", &LanePool::in_use);

  m.def(
      "reflection_window",
      [](int64_t num_inference_steps, const py::object& reflection) {
        const ReflectionSchedule s =
            py::isinstance<py::int_>(reflection)
                ? ReflectionSchedule::first_steps(num_inference_steps, reflection.cast<int64_t>())
                : ReflectionSchedule::from_indices(num_inference_steps,
                                                   reflection.cast<std::vector<int64_t>>());
        std::vector<int64_t> steps;
        for (int64_t i = 0; i < s.num_steps(); ++i) {
          if (s.reflects(i)) steps.push_back(i);
        }
        return steps;
      },
      py::arg("num_inference_steps"), py::arg("reflection"),
      "The step indices that reflect, for lambda (an int) or an explicit index list; raises "
      "InvalidArgumentError for a window the loop cannot run.");

  m.def(
      "guided_ddim_update",
      [](FloatArray e_uncond, FloatArray e_cond, float guidance, FloatArray x, float a,
         float a_next, const std::string& prediction) {
        W2SD_CHECK_ARG(e_uncond.size() == x.size() && e_cond.size() == x.size(),
                       "e_uncond, e_cond and x must have the same size");
        const DdimCoeffs c = make_coeffs(a, a_next);
        const PredictionType p = parse_prediction_type(prediction);
        FloatArray out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        for (py::ssize_t k = 0; k < x.size(); ++k) {
          out.mutable_data()[k] =
              guided_ddim_update(e_uncond.data()[k], e_cond.data()[k], guidance, x.data()[k], c, p);
        }
        return out;
      },
      py::arg("e_uncond"), py::arg("e_cond"), py::arg("guidance"), py::arg("x"), py::arg("a"),
      py::arg("a_next"), py::arg("prediction_type"),
      "The fused guidance + DDIM update per element, as the CUDA kernel computes it.");

  // The CUDA kernels on host data (GPU tests compare them with the host math above).
  m.def(
      "cuda_guided_ddim_update",
      [](FloatArray unet_out, bool guided, float guidance, FloatArray x, float a, float a_next,
         const std::string& prediction, const std::string& unet_dtype, int device) {
        W2SD_CHECK_ARG(unet_dtype == "float32" || unet_dtype == "float16",
                       "unet_dtype: 'float32' or 'float16'");
        const DdimCoeffs c = make_coeffs(a, a_next);
        const PredictionType p = parse_prediction_type(prediction);
        FloatArray result(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
#ifdef W2SD_WITH_CUDA
        std::vector<float> e(unet_out.data(), unet_out.data() + unet_out.size());
        std::vector<float> xs(x.data(), x.data() + x.size());
        const auto dtype = unet_dtype == "float16" ? cuda::DType::kFloat16 : cuda::DType::kFloat32;
        std::vector<float> out;
        {
          py::gil_scoped_release release;
          out = cuda::guided_ddim_update_on_device(device, e, dtype, guided, guidance, xs, c, p);
        }
        std::copy(out.begin(), out.end(), result.mutable_data());
        return result;
#else
        (void)unet_out, (void)guided, (void)guidance, (void)c, (void)p, (void)device;
        detail::throw_error(ErrorCode::kBackend, "this build has no CUDA");
#endif
      },
      py::arg("unet_out"), py::arg("guided"), py::arg("guidance"), py::arg("x"), py::arg("a"),
      py::arg("a_next"), py::arg("prediction_type"), py::arg("unet_dtype") = "float32",
      py::arg("device") = 0,
      "The device loop's update kernel once on the GPU: unet_out is [e_u; e_c] (guided) or e.");
  m.def(
      "cuda_pack_sample",
      [](FloatArray x, const std::string& dtype, bool twice, int device) {
        W2SD_CHECK_ARG(dtype == "float32" || dtype == "float16", "dtype: 'float32' or 'float16'");
#ifdef W2SD_WITH_CUDA
        std::vector<float> xs(x.data(), x.data() + x.size());
        const auto d = dtype == "float16" ? cuda::DType::kFloat16 : cuda::DType::kFloat32;
        std::vector<uint8_t> out;
        {
          py::gil_scoped_release release;
          out = cuda::pack_sample_on_device(device, xs, d, twice);
        }
        return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
#else
        (void)x, (void)twice, (void)device;
        detail::throw_error(ErrorCode::kBackend, "this build has no CUDA");
#endif
      },
      py::arg("x"), py::arg("dtype"), py::arg("twice"), py::arg("device") = 0,
      "The UNet sample input the device loop packs from x, as raw bytes.");

  m.def(
      "cfg_combine",
      [](FloatArray e_uncond, FloatArray e_cond, float guidance) {
        W2SD_CHECK_ARG(e_uncond.size() == e_cond.size(), "e_uncond and e_cond sizes differ");
        FloatArray out(std::vector<py::ssize_t>(e_cond.shape(), e_cond.shape() + e_cond.ndim()));
        for (py::ssize_t k = 0; k < e_cond.size(); ++k) {
          out.mutable_data()[k] = cfg_combine(e_uncond.data()[k], e_cond.data()[k], guidance);
        }
        return out;
      },
      py::arg("e_uncond"), py::arg("e_cond"), py::arg("guidance"));

  py::class_<Engine>(m, "Engine")
      .def(py::init(&make_ort_engine), py::arg("library_path"), py::arg("unet_paths"),
           py::arg("unet_inputs"), py::arg("text_encoder_paths"), py::arg("text_encoder_outputs"),
           py::arg("vae_decoder_path"), py::arg("num_train_timesteps"), py::arg("alphas_cumprod"),
           py::arg("set_alpha_to_one"), py::arg("steps_offset"), py::arg("timestep_spacing"),
           py::arg("prediction_type"), py::arg("intra_op_threads") = 0,
           py::arg("graph_optimization_level") = 99, py::arg("provider") = "cpu",
           py::arg("device_id") = 0, py::arg("lanes") = 1,
           py::arg("provider_options") = std::map<std::string, std::string>{},
           py::arg("memory_arena") = true,
           py::arg("model_provider_options") =
               std::map<std::string, std::map<std::string, std::string>>{},
           py::arg("unet_shape_sessions") = 0,
           py::arg("warm_unet_shapes") = std::vector<std::pair<int, UnetShape>>{},
           "An ONNX Runtime engine: one session per UNet path (OpenVINO: per UNet input shape, "
           "up to unet_shape_sessions), text encoder, VAE decoder.")
      .def_property_readonly("num_unets", [](Engine& e) { return e.backend().num_unets(); })
      .def(
          "unet_sessions", [](Engine& e, int unet) { return e.backend().unet_sessions(unet); },
          py::arg("unet"),
          "What UNet `unet` has sessions for: the reshape_input value of each static-shape "
          "session, then 'dynamic' for one that takes any shape.")
      .def_property_readonly(
          "lanes_in_use", [](Engine& e) { return e.lanes().in_use(); },
          "Lanes checked out right now (by sample() calls and sample_many jobs).")
      .def_property_readonly("num_text_encoders",
                             [](Engine& e) { return e.backend().num_text_encoders(); })
      .def(
          "encode_text",
          [](Engine& e, int encoder, Int64Array ids) {
            W2SD_CHECK_ARG(ids.ndim() == 2, "input_ids must be 2-D (batch, length)");
            std::vector<HostTensor> outputs;
            {
              py::gil_scoped_release release;
              outputs = e.backend().encode_text(encoder, ids.data(), ids.shape(0), ids.shape(1));
            }
            py::list result;
            for (auto& t : outputs) result.append(to_numpy(std::move(t)));
            return result;
          },
          py::arg("encoder"), py::arg("input_ids"),
          "Every output of text encoder `encoder` for these token ids.")
      .def(
          "decode_latents",
          [](Engine& e, FloatArray z) {
            W2SD_CHECK_ARG(z.ndim() == 4, "latents must be 4-D (batch, channels, h, w)");
            HostTensor t;
            {
              py::gil_scoped_release release;
              t = e.backend().decode_latents(z.data(), z.shape(0), z.shape(1), z.shape(2),
                                             z.shape(3));
            }
            return to_numpy(std::move(t));
          },
          py::arg("latents"))
      .def("run_loop", &run_loop, py::arg("latents"), py::arg("num_inference_steps"),
           py::arg("reflection"), py::arg("inversion"), py::arg("roles"),
           py::arg("progress") = py::none(),
           "Run the W2SD loop on a copy of `latents`; returns (final latents, stats).")
      .def("run_many", &run_many, py::arg("requests"), py::arg("lanes"),
           "Run several loops with up to `lanes` in flight; one result dict per request.");
}
