// The engine and the typed objects that cross with it: EngineConfig (what to load),
// RoleConditioning and LoopRequest (what to run), LoopStats and LaneResult (what came out).
#include "w2sd/engine.h"

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <map>
#include <optional>
#include <variant>

#include "binding.h"
#include "w2sd/backend_factory.h"
#include "w2sd/loop_request.h"
#include "w2sd/status.h"

namespace w2sd::python {
namespace {

// One role's conditioning as Python holds it: the arrays are owned here, the core gets views.
struct RoleArrays {
  int unet = 0;
  float guidance = 1.0f;
  float lora_scale = 0.0f;
  std::optional<FloatArray> cond, uncond, cond_pooled, uncond_pooled, time_ids;
};

struct LoopRequestArrays {
  FloatArray latents;
  int64_t num_inference_steps = 0;
  std::variant<int64_t, std::vector<int64_t>> reflection = int64_t{0};
  std::string inversion = "official";
  RoleArrays strong, weak, denoiser;
  py::object progress = py::none();
};

// run_many's answer for one request: latents or the exception sample() would raise.
struct LaneResult {
  std::optional<FloatArray> latents;
  py::object error = py::none();
  int lane = -1;
  int64_t start_seq = -1, end_seq = -1;
  LoopStats stats;
};

HostArray view(const std::optional<FloatArray>& a) {
  if (!a) return {};
  return HostArray{a->data(), std::vector<int64_t>(a->shape(), a->shape() + a->ndim())};
}

RoleConditioning to_core(const RoleArrays& r) {
  RoleConditioning c;
  c.unet = r.unet;
  c.guidance = r.guidance;
  c.lora_scale = r.lora_scale;
  c.cond = view(r.cond);
  c.uncond = view(r.uncond);
  c.cond_pooled = view(r.cond_pooled);
  c.uncond_pooled = view(r.uncond_pooled);
  c.time_ids = view(r.time_ids);
  return c;
}

// Views into `r`'s arrays, valid while `r` lives.
LoopRequest to_core(const LoopRequestArrays& r) {
  LoopRequest req;
  req.shape =
      latent_shape(std::vector<int64_t>(r.latents.shape(), r.latents.shape() + r.latents.ndim()));
  req.num_inference_steps = r.num_inference_steps;
  if (std::holds_alternative<int64_t>(r.reflection)) {
    req.reflection_steps = std::get<int64_t>(r.reflection);
  } else {
    req.use_indices = true;
    req.reflection_indices = std::get<1>(r.reflection);
  }
  req.inversion = parse_inversion(r.inversion);
  req.roles = {to_core(r.strong), to_core(r.weak), to_core(r.denoiser)};
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

FloatArray latents_array(const LatentShape& shape, const std::vector<float>& x) {
  FloatArray out({shape.batch, shape.channels, shape.height, shape.width});
  std::copy(x.begin(), x.end(), out.mutable_data());
  return out;
}

py::array_t<float> to_numpy(HostTensor&& t) {
  auto* owned = new std::vector<float>(std::move(t.data));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>(t.shape, owned->data(), free_when_done);
}

std::pair<FloatArray, LoopStats> run_loop(Engine& engine, const LoopRequestArrays& request) {
  const LoopRequest req = to_core(request);
  std::vector<float> x(request.latents.data(), request.latents.data() + request.latents.size());
  const ProgressFn progress = wrap_progress(request.progress);
  LoopStats stats;
  {
    py::gil_scoped_release release;
    stats = engine.run_loop(req, x.data(), progress);
  }
  return {latents_array(req.shape, x), stats};
}

// A request whose conversion fails (bad latents, inversion) gets its error without running;
// the others run.
std::vector<LaneResult> run_many(Engine& engine, const std::vector<LoopRequestArrays>& requests,
                                 int lanes) {
  std::vector<LaneResult> out(requests.size());
  std::vector<size_t> runs;  // indices of the requests that run
  std::vector<LoopRequest> reqs;
  std::vector<std::vector<float>> xs;
  std::vector<ProgressFn> progress;
  std::vector<float*> ptrs;
  for (size_t j = 0; j < requests.size(); ++j) {
    const LoopRequestArrays& r = requests[j];
    try {
      reqs.push_back(to_core(r));
    } catch (const W2sdError&) {
      out[j].error = python_error(std::current_exception());
      continue;
    }
    runs.push_back(j);
    xs.emplace_back(r.latents.data(), r.latents.data() + r.latents.size());
    progress.push_back(wrap_progress(r.progress));
  }
  for (auto& x : xs) ptrs.push_back(x.data());
  std::vector<LoopStats> stats;
  std::vector<LaneJobResult> results;
  {
    py::gil_scoped_release release;
    results = engine.run_many(reqs, ptrs, progress, lanes, &stats);
  }
  for (size_t i = 0; i < results.size(); ++i) {
    const LaneJobResult& r = results[i];
    LaneResult& o = out[runs[i]];
    o.lane = r.lane;
    o.start_seq = r.start_seq;
    o.end_seq = r.end_seq;
    o.stats = stats[i];
    if (r.ok) {
      o.latents = latents_array(reqs[i].shape, xs[i]);
    } else {
      o.error = python_error(r.exception);
    }
  }
  return out;
}

void bind_config(py::module_& m) {
  py::class_<OrtBackendConfig>(m, "ModelFiles",
                               "The ONNX models of an engine and the settings of their sessions.")
      .def(py::init<>())
      .def_readwrite("library_path", &OrtBackendConfig::library_path)
      .def_readwrite("unet_paths", &OrtBackendConfig::unet_paths)
      .def_property(
          "unet_inputs", [](const OrtBackendConfig& c) { return c.unet_names.inputs; },
          [](OrtBackendConfig& c, std::vector<std::string> v) { c.unet_names.inputs = v; })
      .def_readwrite("text_encoder_paths", &OrtBackendConfig::text_encoder_paths)
      .def_property(
          "text_encoder_outputs",
          [](const OrtBackendConfig& c) {
            std::vector<std::vector<std::string>> out;
            for (const auto& n : c.text_encoder_names) out.push_back(n.outputs);
            return out;
          },
          [](OrtBackendConfig& c, const std::vector<std::vector<std::string>>& outputs) {
            c.text_encoder_names.clear();
            for (const auto& o : outputs) c.text_encoder_names.push_back({{"input_ids"}, o});
          })
      .def_readwrite("vae_decoder_path", &OrtBackendConfig::vae_decoder_path)
      .def_readwrite("intra_op_threads", &OrtBackendConfig::intra_op_threads)
      .def_readwrite("graph_optimization_level", &OrtBackendConfig::graph_optimization_level)
      .def_readwrite("memory_arena", &OrtBackendConfig::cpu_memory_arena);

  py::class_<EngineConfig>(m, "EngineConfig", "What Engine loads: backend, models, options.")
      .def(py::init<>())
      .def_readwrite("provider", &EngineConfig::provider)
      .def_readwrite("models", &EngineConfig::models)
      .def_readwrite("scheduler", &EngineConfig::scheduler)
      .def_readwrite("provider_options", &EngineConfig::provider_options)
      .def_readwrite("device_id", &EngineConfig::device_id)
      .def_readwrite("lanes", &EngineConfig::lanes)
      .def_readwrite("model_provider_options", &EngineConfig::model_provider_options)
      .def_readwrite("unet_shape_sessions", &EngineConfig::unet_shape_sessions)
      .def_readwrite("warm_unet_shapes", &EngineConfig::warm_unet_shapes);
}

void bind_request(py::module_& m) {
  py::class_<RoleArrays>(m, "RoleConditioning",
                         "One role's UNet, guidance, LoRA scale and embeddings (None: unused).")
      .def(py::init<>())
      .def_readwrite("unet", &RoleArrays::unet)
      .def_readwrite("guidance", &RoleArrays::guidance)
      .def_readwrite("lora_scale", &RoleArrays::lora_scale)
      .def_readwrite("cond", &RoleArrays::cond)
      .def_readwrite("uncond", &RoleArrays::uncond)
      .def_readwrite("cond_pooled", &RoleArrays::cond_pooled)
      .def_readwrite("uncond_pooled", &RoleArrays::uncond_pooled)
      .def_readwrite("time_ids", &RoleArrays::time_ids);

  py::class_<LoopRequestArrays>(m, "LoopRequest",
                                "One W2SD loop: latents (B, C, h, w), steps, reflection (an int "
                                "or step indices), inversion, three roles, progress callback.")
      .def(py::init<>())
      .def_readwrite("latents", &LoopRequestArrays::latents)
      .def_readwrite("num_inference_steps", &LoopRequestArrays::num_inference_steps)
      .def_readwrite("reflection", &LoopRequestArrays::reflection)
      .def_readwrite("inversion", &LoopRequestArrays::inversion)
      .def_readwrite("strong", &LoopRequestArrays::strong)
      .def_readwrite("weak", &LoopRequestArrays::weak)
      .def_readwrite("denoiser", &LoopRequestArrays::denoiser)
      .def_readwrite("progress", &LoopRequestArrays::progress);

  py::class_<LoopStats>(m, "LoopStats", "One loop's UNet calls, wall times and lane.")
      .def_readonly("unet_calls", &LoopStats::unet_calls)
      .def_readonly("loop_s", &LoopStats::loop_seconds)
      .def_readonly("unet_s", &LoopStats::unet_seconds)
      .def_readonly("lane", &LoopStats::lane);

  py::class_<LaneResult>(m, "LaneResult",
                         "run_many's result for one request: latents, or the exception "
                         "sample() would raise; its lane and global start/end order.")
      .def_readonly("latents", &LaneResult::latents)
      .def_readonly("error", &LaneResult::error)
      .def_readonly("lane", &LaneResult::lane)
      .def_readonly("start_seq", &LaneResult::start_seq)
      .def_readonly("end_seq", &LaneResult::end_seq)
      .def_readonly("stats", &LaneResult::stats);
}

}  // namespace

void bind_engine(py::module_& m) {
  bind_config(m);
  bind_request(m);
  py::class_<Engine>(m, "Engine")
      .def(py::init([](const EngineConfig& config) {
             py::gil_scoped_release release;  // session creation loads weights
             return make_engine(config);
           }),
           py::arg("config"), "Load an engine's models into sessions of config.provider.")
      .def_property_readonly("num_unets", [](Engine& e) { return e.backend().num_unets(); })
      .def(
          "unet_sessions", [](Engine& e, int unet) { return e.backend().unet_sessions(unet); },
          py::arg("unet"),
          "What UNet `unet` has sessions for: the input shapes of each static-shape "
          "session (sample[2,4,32,32],...), then 'dynamic' for one that takes any shape.")
      .def_property_readonly(
          "lanes_in_use", [](Engine& e) { return e.lanes().in_use(); },
          "Lanes checked out right now (by sample() calls and sample_many jobs).")
      .def_property_readonly("num_text_encoders",
                             [](Engine& e) { return e.backend().num_text_encoders(); })
      .def(
          "encode_text",
          [](Engine& e, int encoder, const Int64Array& ids) {
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
          [](Engine& e, const FloatArray& z) {
            const LatentShape s =
                latent_shape(std::vector<int64_t>(z.shape(), z.shape() + z.ndim()));
            HostTensor t;
            {
              py::gil_scoped_release release;
              t = e.backend().decode_latents(z.data(), s.batch, s.channels, s.height, s.width);
            }
            return to_numpy(std::move(t));
          },
          py::arg("latents"))
      .def("run_loop", &run_loop, py::arg("request"),
           "Run the W2SD loop on a copy of request.latents; returns (final latents, stats).")
      .def("run_many", &run_many, py::arg("requests"), py::arg("lanes"),
           "Run several loops with up to `lanes` in flight; one LaneResult per request.");
}

}  // namespace w2sd::python
