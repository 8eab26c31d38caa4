// pybind11 binding of the C++ core: type conversion, the GIL released around
// long work, and W2sdError translated into w2sd.errors in one place.
// Defaults, validation of user input and tokenisation live in Python.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "w2sd/ddim_math.h"
#include "w2sd/engine.h"
#include "w2sd/ort_backend.h"
#include "w2sd/ort_library.h"
#include "w2sd/reflection.h"
#include "w2sd/status.h"

namespace py = pybind11;
using namespace w2sd;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Int64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

const char* error_class(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "InvalidArgumentError";
    case ErrorCode::kNotFound: return "NotFoundError";
    case ErrorCode::kBackend: return "BackendError";
    case ErrorCode::kCancelled: return "CancelledError";
    case ErrorCode::kInternal: return "W2SDError";
  }
  return "W2SDError";
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

std::unique_ptr<Engine> make_ort_engine(const std::string& library_path,
                                        const std::vector<std::string>& unet_paths,
                                        const std::vector<std::string>& unet_inputs,
                                        const std::vector<std::string>& text_encoder_paths,
                                        const std::vector<std::vector<std::string>>& text_encoder_outputs,
                                        const std::string& vae_decoder_path,
                                        int64_t num_train_timesteps, FloatArray alphas_cumprod,
                                        bool set_alpha_to_one, int64_t steps_offset,
                                        const std::string& timestep_spacing,
                                        const std::string& prediction_type, int intra_op_threads,
                                        int graph_optimization_level) {
  SchedulerConfig sc = make_scheduler_config(num_train_timesteps, alphas_cumprod, set_alpha_to_one,
                                             steps_offset, timestep_spacing, prediction_type);
  OrtBackendConfig bc;
  bc.library_path = library_path;
  bc.unet_paths = unet_paths;
  bc.unet_names.inputs = unet_inputs;
  bc.text_encoder_paths = text_encoder_paths;
  for (const auto& outputs : text_encoder_outputs) {
    bc.text_encoder_names.push_back(OrtModelNames{{"input_ids"}, outputs});
  }
  bc.vae_decoder_path = vae_decoder_path;
  bc.intra_op_threads = intra_op_threads;
  bc.graph_optimization_level = graph_optimization_level;
  std::unique_ptr<InferenceBackend> backend;
  {
    py::gil_scoped_release release;  // session creation loads weights
    backend = std::make_unique<OrtBackend>(bc);
  }
  return std::make_unique<Engine>(std::move(backend), std::move(sc));
}

InversionMode parse_inversion(const std::string& name) {
  if (name == "official") return InversionMode::kOfficial;
  if (name == "exact") return InversionMode::kExact;
  detail::throw_error(ErrorCode::kInvalidArgument, "inversion: unknown mode '", name,
                      "' (expected 'official' or 'exact')");
}

// roles: three dicts (strong, weak, denoiser) with keys unet, guidance, cond, uncond
// and, for SDXL, cond_pooled, uncond_pooled, time_ids (None where unused).
py::tuple run_loop(Engine& engine, FloatArray latents, int64_t num_inference_steps,
                   py::object reflection, const std::string& inversion, py::list roles,
                   py::object progress) {
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
  std::vector<FloatArray> keep_alive;  // conditioning referenced by pointer during the loop
  const int64_t batch = req.shape.batch;
  // Takes roles[r][key] as a float array of shape (batch, dims...), or null if None/absent.
  auto take = [&](const py::dict& role, const char* key, size_t r, int ndim,
                  std::vector<int64_t>* dims) -> const float* {
    if (!role.contains(key) || role[key].is_none()) return nullptr;
    auto a = role[key].cast<FloatArray>();
    W2SD_CHECK_ARG(a.ndim() == ndim && a.shape(0) == batch, "roles[", r, "]['", key,
                   "'] must be ", ndim, "-D with batch ", batch);
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
    rc.cond = take(role, "cond", r, 3, &text_dims);
    rc.uncond = take(role, "uncond", r, 3, &text_dims);
    rc.cond_pooled = take(role, "cond_pooled", r, 2, &pooled_dims);
    rc.uncond_pooled = take(role, "uncond_pooled", r, 2, &pooled_dims);
    rc.time_ids = take(role, "time_ids", r, 2, &ids_dims);
  }
  W2SD_CHECK_ARG(text_dims.size() == 2, "roles need 'cond' embeddings");
  req.cond_shape.text_len = text_dims[0];
  req.cond_shape.text_dim = text_dims[1];
  req.cond_shape.pooled_dim = pooled_dims.empty() ? 0 : pooled_dims[0];
  req.cond_shape.time_ids_dim = ids_dims.empty() ? 0 : ids_dims[0];
  std::vector<float> x(latents.data(), latents.data() + latents.size());
  ProgressFn progress_fn;
  if (!progress.is_none()) {
    progress_fn = [progress](int64_t done, int64_t total) {
      py::gil_scoped_acquire acquire;
      py::object keep_going = progress(done, total);
      return keep_going.is_none() || keep_going.cast<bool>();
    };
  }
  LoopStats stats;
  {
    py::gil_scoped_release release;
    stats = engine.run_loop(req, x.data(), progress_fn);
  }
  FloatArray out({req.shape.batch, req.shape.channels, req.shape.height, req.shape.width});
  std::copy(x.begin(), x.end(), out.mutable_data());
  py::dict s;
  s["unet_calls"] = stats.unet_calls;
  s["loop_s"] = stats.loop_seconds;
  s["unet_s"] = stats.unet_seconds;
  return py::make_tuple(out, s);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "w2sd C++ core: DDIM math, the W2SD reflection loop, ONNX Runtime backend";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const W2sdError& e) {
      py::object cls = py::module_::import("w2sd.errors").attr(error_class(e.code()));
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

  m.def("load_ort_library", [](const std::string& path) {
    const OrtLibraryInfo& info = load_ort_library(path);
    return py::make_tuple(info.path, info.version, info.api_version);
  }, py::arg("path"), "Load ONNX Runtime's shared library; returns (path, version, api_version).");

  py::class_<DdimSchedule>(m, "DdimSchedule",
                           "DDIM timesteps and (inverse) steps, the math the loop runs.")
      .def(py::init([](int64_t num_train_timesteps, FloatArray alphas_cumprod,
                       bool set_alpha_to_one, int64_t steps_offset,
                       const std::string& timestep_spacing, const std::string& prediction_type,
                       int64_t num_inference_steps) {
             return DdimSchedule(make_scheduler_config(num_train_timesteps, alphas_cumprod,
                                                       set_alpha_to_one, steps_offset,
                                                       timestep_spacing, prediction_type),
                                 num_inference_steps);
           }),
           py::arg("num_train_timesteps"), py::arg("alphas_cumprod"), py::arg("set_alpha_to_one"),
           py::arg("steps_offset"), py::arg("timestep_spacing"), py::arg("prediction_type"),
           py::arg("num_inference_steps"))
      .def_property_readonly("timesteps", &DdimSchedule::timesteps)
      .def("step", [](const DdimSchedule& s, FloatArray e, int64_t t, FloatArray x) {
        return apply_update(s, e, x, s.step_coeffs(t));
      }, py::arg("model_output"), py::arg("timestep"), py::arg("sample"),
         "DDIMScheduler.step(model_output, timestep, sample).prev_sample")
      .def("inverse_step", [](const DdimSchedule& s, FloatArray e, int64_t t, FloatArray x) {
        return apply_update(s, e, x, s.inverse_step_coeffs(t));
      }, py::arg("model_output"), py::arg("timestep"), py::arg("sample"),
         "DDIMInverseScheduler.step(model_output, timestep, sample).prev_sample");

  m.def("cfg_combine", [](FloatArray e_uncond, FloatArray e_cond, float guidance) {
    W2SD_CHECK_ARG(e_uncond.size() == e_cond.size(), "e_uncond and e_cond sizes differ");
    FloatArray out(std::vector<py::ssize_t>(e_cond.shape(), e_cond.shape() + e_cond.ndim()));
    for (py::ssize_t k = 0; k < e_cond.size(); ++k) {
      out.mutable_data()[k] = cfg_combine(e_uncond.data()[k], e_cond.data()[k], guidance);
    }
    return out;
  }, py::arg("e_uncond"), py::arg("e_cond"), py::arg("guidance"));

  py::class_<Engine>(m, "Engine")
      .def(py::init(&make_ort_engine), py::arg("library_path"), py::arg("unet_paths"),
           py::arg("unet_inputs"), py::arg("text_encoder_paths"), py::arg("text_encoder_outputs"),
           py::arg("vae_decoder_path"),
           py::arg("num_train_timesteps"), py::arg("alphas_cumprod"),
           py::arg("set_alpha_to_one"), py::arg("steps_offset"), py::arg("timestep_spacing"),
           py::arg("prediction_type"), py::arg("intra_op_threads") = 0,
           py::arg("graph_optimization_level") = 99,
           "An ONNX Runtime engine: one session per UNet path, text encoder, VAE decoder.")
      .def_property_readonly("num_unets", [](Engine& e) { return e.backend().num_unets(); })
      .def_property_readonly("num_text_encoders",
                             [](Engine& e) { return e.backend().num_text_encoders(); })
      .def("encode_text", [](Engine& e, int encoder, Int64Array ids) {
        W2SD_CHECK_ARG(ids.ndim() == 2, "input_ids must be 2-D (batch, length)");
        std::vector<HostTensor> outputs;
        {
          py::gil_scoped_release release;
          outputs = e.backend().encode_text(encoder, ids.data(), ids.shape(0), ids.shape(1));
        }
        py::list result;
        for (auto& t : outputs) result.append(to_numpy(std::move(t)));
        return result;
      }, py::arg("encoder"), py::arg("input_ids"),
         "Every output of text encoder `encoder` for these token ids.")
      .def("decode_latents", [](Engine& e, FloatArray z) {
        W2SD_CHECK_ARG(z.ndim() == 4, "latents must be 4-D (batch, channels, h, w)");
        HostTensor t;
        {
          py::gil_scoped_release release;
          t = e.backend().decode_latents(z.data(), z.shape(0), z.shape(1), z.shape(2), z.shape(3));
        }
        return to_numpy(std::move(t));
      }, py::arg("latents"))
      .def("run_loop", &run_loop, py::arg("latents"), py::arg("num_inference_steps"),
           py::arg("reflection"), py::arg("inversion"), py::arg("roles"),
           py::arg("progress") = py::none(),
           "Run the W2SD loop on a copy of `latents`; returns (final latents, stats).");
}
