// Internal helpers shared by the ONNX Runtime backends (CPU, OpenVINO, CUDA/TensorRT).
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "w2sd/inference_backend.h"
#include "w2sd/ort_api.h"
#include "w2sd/ort_library.h"
#include "w2sd/ort_models.h"
#include "w2sd/status.h"
#include "w2sd/unet_shape.h"

namespace w2sd::ort_session {

// Converts ONNX Runtime's exceptions into the core's one error type.
template <typename Fn>
auto ort_call(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Ort::Exception& e) {
    detail::throw_error(ErrorCode::kBackend, what, ": ONNX Runtime error: ", e.what());
  }
}

inline Ort::Env& shared_env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "w2sd");
  return env;
}

// Not movable: `inputs`/`outputs` point into the strings it owns.
struct NamedSession {
  NamedSession(const NamedSession&) = delete;
  NamedSession& operator=(const NamedSession&) = delete;

  std::unique_ptr<Ort::Session> session;
  std::vector<std::string> input_names, output_names;
  std::vector<const char*> inputs, outputs;  // c_str views of the names above

  NamedSession(const std::string& path, const OrtModelNames& names,
               const Ort::SessionOptions& options, const char* what)
      : input_names(names.inputs), output_names(names.outputs) {
    if (!std::filesystem::is_regular_file(path)) {
      detail::throw_error(ErrorCode::kNotFound, what, ": model file '", path, "' does not exist");
    }
    session = ort_call(
        what, [&] { return std::make_unique<Ort::Session>(shared_env(), path.c_str(), options); });
    for (const auto& n : input_names) inputs.push_back(n.c_str());
    for (const auto& n : output_names) outputs.push_back(n.c_str());
    check_names(what);
  }

  // Adds `name` to the bound inputs if the model has it; true if it does.
  bool add_optional_input(const std::string& name) {
    Ort::AllocatorWithDefaultOptions alloc;
    bool found = false;
    for (size_t i = 0; i < session->GetInputCount(); ++i) {
      found = found || name == session->GetInputNameAllocated(i, alloc).get();
    }
    if (!found) return false;
    input_names.push_back(name);
    inputs.clear();  // the strings may have moved
    for (const auto& n : input_names) inputs.push_back(n.c_str());
    has_lora_scale = has_lora_scale || name == kLoraScaleInput;
    return true;
  }

  static constexpr const char* kLoraScaleInput = "lora_scale";
  bool has_lora_scale = false;  // a UNet exported with its LoRA unfused

  void check_names(const char* what) const {
    Ort::AllocatorWithDefaultOptions alloc;
    const size_t n_in = session->GetInputCount();
    std::vector<std::string> model_inputs;
    for (size_t i = 0; i < n_in; ++i) {
      model_inputs.emplace_back(session->GetInputNameAllocated(i, alloc).get());
    }
    for (const auto& name : input_names) {
      bool found = false;
      for (const auto& m : model_inputs) found = found || m == name;
      if (!found) {
        detail::throw_error(ErrorCode::kInvalidArgument, what, ": model has no input '", name, "'");
      }
    }
  }
};

inline HostTensor to_host(Ort::Value& value) {
  HostTensor t;
  auto info = value.GetTensorTypeAndShapeInfo();
  t.shape = info.GetShape();
  const float* data = value.GetTensorData<float>();
  t.data.assign(data, data + info.GetElementCount());
  return t;
}

// A UNet session: the configured inputs, plus "lora_scale" where the model takes one.
inline std::unique_ptr<NamedSession> make_unet_session(const std::string& path,
                                                       const OrtModelNames& names,
                                                       const Ort::SessionOptions& options) {
  auto s = std::make_unique<NamedSession>(path, names, options, "UNet");
  s->add_optional_input(NamedSession::kLoraScaleInput);
  return s;
}

// The UNet's input tensors (2 for an unconditional denoiser, 3 for SD, 5 for SDXL, then the
// LoRA scale where the model takes one) and its output tensor, wrapping the caller's buffers in
// `mem` (no copies). `timestep` and `lora_scale` point at one float each in the same memory. The
// shapes live in `shapes`, which must outlive the values.
struct UnetTensors {
  std::array<std::array<int64_t, 4>, 5> shapes{};
  std::vector<Ort::Value> inputs;
  Ort::Value output{nullptr};
};

inline void make_unet_tensors(const Ort::MemoryInfo& mem, const NamedSession& s,
                              const UnetInputs& in, const float* timestep, const float* lora_scale,
                              float* out, UnetTensors* t) {
  const size_t n_base = s.inputs.size() - (s.has_lora_scale ? 1 : 0);
  check_unet_inputs(n_base, in);
  auto& sh = t->shapes;
  sh[0] = {in.batch, in.channels, in.height, in.width};
  sh[1] = {1, 0, 0, 0};
  sh[2] = {in.batch, in.text_len, in.text_dim, 0};
  sh[3] = {in.batch, in.pooled_dim, 0, 0};
  sh[4] = {in.batch, in.time_ids_dim, 0, 0};
  const size_t ranks[5] = {4, 1, 3, 2, 2};
  const float* data[5] = {in.sample, timestep, in.text, in.text_embeds, in.time_ids};
  t->inputs.clear();
  t->inputs.reserve(6);
  for (size_t i = 0; i < n_base; ++i) {
    size_t count = 1;
    for (size_t d = 0; d < ranks[i]; ++d) count *= static_cast<size_t>(sh[i][d]);
    t->inputs.push_back(Ort::Value::CreateTensor<float>(mem, const_cast<float*>(data[i]), count,
                                                        sh[i].data(), ranks[i]));
  }
  if (s.has_lora_scale) {
    W2SD_CHECK_ARG(lora_scale != nullptr, "this UNet takes a LoRA scale");
    t->inputs.push_back(
        Ort::Value::CreateTensor<float>(mem, const_cast<float*>(lora_scale), 1, sh[1].data(), 1));
  }
  const size_t sample_count = static_cast<size_t>(in.batch * in.channels * in.height * in.width);
  t->output = Ort::Value::CreateTensor<float>(mem, out, sample_count, sh[0].data(), 4);
}

// Runs a one-off call with a host input and returns every output on the host
// (text encoders, the VAE decoder: outside the loop, copies allowed).
inline std::vector<HostTensor> run_on_host(NamedSession& s, Ort::Value& input, const char* what) {
  return ort_call(what, [&] {
    auto outputs = s.session->Run(Ort::RunOptions{}, s.inputs.data(), &input, 1, s.outputs.data(),
                                  s.outputs.size());
    std::vector<HostTensor> result;
    for (auto& v : outputs) result.push_back(to_host(v));
    return result;
  });
}

inline std::vector<HostTensor> encode_text_on_host(NamedSession& s, const int64_t* input_ids,
                                                   int64_t batch, int64_t length) {
  static const Ort::MemoryInfo cpu =
      Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  const std::array<int64_t, 2> shape{batch, length};
  Ort::Value ids = ort_call("text encoder input", [&] {
    return Ort::Value::CreateTensor<int64_t>(cpu, const_cast<int64_t*>(input_ids),
                                             static_cast<size_t>(batch * length), shape.data(),
                                             shape.size());
  });
  return run_on_host(s, ids, "text encoder");
}

// The VAE decoder's session, or null when the engine has none (a denoiser engine).
inline std::unique_ptr<NamedSession> make_vae_decoder_session(const std::string& path,
                                                              const OrtModelNames& names,
                                                              const Ort::SessionOptions& options) {
  if (path.empty()) return nullptr;
  return std::make_unique<NamedSession>(path, names, options, "VAE decoder");
}

// `vae` may be null (no VAE decoder): that is the caller's error, reported as such.
inline HostTensor decode_on_host(NamedSession* vae, const float* latents, int64_t batch,
                                 int64_t channels, int64_t height, int64_t width) {
  W2SD_CHECK_ARG(vae != nullptr, "this engine has no VAE decoder: ask for output_type='latent'");
  NamedSession& s = *vae;
  static const Ort::MemoryInfo cpu =
      Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  const std::array<int64_t, 4> shape{batch, channels, height, width};
  Ort::Value z = ort_call("VAE decoder input", [&] {
    return Ort::Value::CreateTensor<float>(cpu, const_cast<float*>(latents),
                                           static_cast<size_t>(batch * channels * height * width),
                                           shape.data(), shape.size());
  });
  return std::move(run_on_host(s, z, "VAE decoder").at(0));
}

// Session options every host backend starts from (threads, optimisation level, arena),
// with ONNX Runtime's library and environment ready.
inline Ort::SessionOptions host_session_options(const OrtBackendConfig& config) {
  load_ort_library(config.library_path);
  shared_env();  // execution providers log through the environment: it must exist first
  return ort_call("session options", [&] {
    Ort::SessionOptions o;
    o.SetIntraOpNumThreads(config.intra_op_threads);
    o.SetGraphOptimizationLevel(
        static_cast<GraphOptimizationLevel>(config.graph_optimization_level));
    if (!config.cpu_memory_arena) o.DisableCpuMemArena();
    return o;
  });
}

// A host backend's text encoders and VAE decoder (none: a denoiser engine).
struct HostModels {
  std::vector<std::unique_ptr<NamedSession>> text_encoders;
  std::unique_ptr<NamedSession> vae_decoder;

  HostModels(const OrtBackendConfig& config, const Ort::SessionOptions& options) {
    for (size_t i = 0; i < config.text_encoder_paths.size(); ++i) {
      text_encoders.push_back(std::make_unique<NamedSession>(
          config.text_encoder_paths[i], config.text_encoder_names[i], options, "text encoder"));
    }
    vae_decoder =
        make_vae_decoder_session(config.vae_decoder_path, config.vae_decoder_names, options);
  }

  NamedSession& text_encoder(int encoder) {
    W2SD_CHECK_ARG(encoder >= 0 && static_cast<size_t>(encoder) < text_encoders.size(),
                   "text encoder index ", encoder, " out of range");
    return *text_encoders[static_cast<size_t>(encoder)];
  }
};

// One UNet call on host memory: tensors wrap the caller's buffers (no copies, no
// allocation in the loop).
inline void run_unet_on_host(NamedSession& s, const UnetInputs& in, float* out) {
  static const Ort::MemoryInfo cpu =
      Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  const float timestep = in.timestep;
  const float lora_scale = in.lora_scale;
  ort_call("UNet", [&] {
    UnetTensors t;
    make_unet_tensors(cpu, s, in, &timestep, &lora_scale, out, &t);
    s.session->Run(Ort::RunOptions{nullptr}, s.inputs.data(), t.inputs.data(), t.inputs.size(),
                   s.outputs.data(), &t.output, 1);
    return 0;
  });
}

}  // namespace w2sd::ort_session
