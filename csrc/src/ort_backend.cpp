#include "w2sd/ort_backend.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>

#include "ort_session.h"
#include "w2sd/ort_library.h"
#include "w2sd/page_trimmer.h"
#include "w2sd/status.h"

namespace w2sd {
using namespace ort_session;

// One UNet's sessions: up to unet_shape_sessions compiled for one static shape each, and a
// dynamic-shape one for every other shape (made when first needed). Entries are never
// removed, so a session handed out stays valid while other threads add shapes.
struct UnetSessions {
  std::string path;
  std::mutex mutex;
  std::map<UnetShape, std::unique_ptr<NamedSession>> by_shape;
  std::unique_ptr<NamedSession> dynamic;
};

struct OrtBackend::Impl {
  explicit Impl(const OrtBackendConfig& c) : config(c), options(host_session_options(c)) {}

  OrtBackendConfig config;
  Ort::SessionOptions options;  // dynamic shapes
  Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::RunOptions run_options;
  std::vector<std::unique_ptr<UnetSessions>> unets;
  std::vector<std::unique_ptr<NamedSession>> text_encoders;
  std::unique_ptr<NamedSession> vae_decoder;
  // OpenVINO only: the folders whose mapped weights are trimmed (see page_trimmer.h) while
  // sessions are made and during each model's first run of a shape, when its CPU plugin
  // reads them; shapes already run, per session.
  std::vector<std::string> trim_dirs;
  std::mutex seen_mutex;
  std::set<std::tuple<const void*, int64_t, int64_t, int64_t>> seen;

  // OpenVINO only: one model call at a time across concurrent requests. Each call runs on
  // every core; two at once only oversubscribed them (sd15-256, bf16, 2 cores: two requests
  // in flight gave 0.138 images/s against 0.144 one at a time).
  bool one_call_at_a_time = false;
  std::mutex call_mutex;

  // `run()`, one at a time where asked, and trimming the mapped weights while it runs if this
  // is the first run of (session, batch, height, width).
  template <class Run>
  void run_model(const void* session, int64_t batch, int64_t height, int64_t width, Run&& run) {
    std::unique_lock<std::mutex> turn(call_mutex, std::defer_lock);
    if (one_call_at_a_time) turn.lock();
    const auto key = std::make_tuple(session, batch, height, width);
    bool first = false;
    if (!trim_dirs.empty()) {
      std::lock_guard<std::mutex> lock(seen_mutex);
      first = seen.count(key) == 0;
    }
    if (!first) {
      run();
      return;
    }
    {
      MappedFileTrimmer trimmer(trim_dirs, kTrimInterval);
      run();
    }
    release_free_heap();  // what the first run of a shape allocated for its set-up
    std::lock_guard<std::mutex> lock(seen_mutex);
    seen.insert(key);
  }

  // The session that runs UNet `unet` at `shape`, made (and compiled) if it has none yet.
  // Making one holds this UNet's lock: its other calls wait, once per shape.
  NamedSession& unet_session(size_t unet, const UnetShape& shape) {
    UnetSessions& u = *unets[unet];
    std::lock_guard<std::mutex> lock(u.mutex);
    const auto capacity = static_cast<size_t>(std::max(config.unet_shape_sessions, 0));
    if (capacity > 0) {
      const auto found = u.by_shape.find(shape);
      if (found != u.by_shape.end()) return *found->second;
      if (u.by_shape.size() < capacity) {
        const Ort::SessionOptions fixed = host_session_options(
            config, {{"reshape_input", reshape_input_option(config.unet_names.inputs, shape)}});
        return *u.by_shape.emplace(shape, make_trimmed_unet_session(u.path, fixed)).first->second;
      }
    }
    if (!u.dynamic) u.dynamic = make_trimmed_unet_session(u.path, options);
    return *u.dynamic;
  }

  // A UNet session, its mapped weights trimmed while OpenVINO compiles it and the heap it
  // freed returned.
  std::unique_ptr<NamedSession> make_trimmed_unet_session(const std::string& path,
                                                          const Ort::SessionOptions& o) {
    MappedFileTrimmer trimmer(trim_dirs, kTrimInterval);
    auto session = make_unet_session(path, config.unet_names, o);
    if (!trim_dirs.empty()) release_free_heap();
    return session;
  }

  static constexpr std::chrono::milliseconds kTrimInterval{20};
};

namespace {

// The folders of the models and of OpenVINO's cache: what OpenVINO memory-maps. Symlinks
// resolved, as /proc/self/maps names the files.
std::vector<std::string> openvino_trim_dirs(const OrtBackendConfig& config) {
  auto resolved = [](const std::string& p) {
    std::error_code error;
    const auto r = std::filesystem::weakly_canonical(p, error);
    return error ? std::filesystem::absolute(p).lexically_normal() : r;
  };
  std::vector<std::string> paths = config.unet_paths;
  paths.insert(paths.end(), config.text_encoder_paths.begin(), config.text_encoder_paths.end());
  paths.push_back(config.vae_decoder_path);
  std::set<std::string> dirs;
  for (const auto& p : paths) {
    if (p.empty()) continue;
    dirs.insert(resolved(p).parent_path().string());
  }
  for (const auto& [key, value] : config.provider_options) {
    if (key == "cache_dir" && !value.empty()) {
      dirs.insert(resolved(value).string());
    }
  }
  return {dirs.begin(), dirs.end()};
}

}  // namespace

Ort::SessionOptions host_session_options(
    const OrtBackendConfig& config, const std::vector<std::pair<std::string, std::string>>& extra) {
  load_ort_library(config.library_path);
  shared_env();  // execution providers log through the environment: it must exist first
  Ort::SessionOptions options = ort_call("session options", [&] {
    Ort::SessionOptions o;
    o.SetIntraOpNumThreads(config.intra_op_threads);
    o.SetGraphOptimizationLevel(
        static_cast<GraphOptimizationLevel>(config.graph_optimization_level));
    if (!config.cpu_memory_arena) o.DisableCpuMemArena();
    return o;
  });
  if (config.execution_provider == "openvino") {
    std::unordered_map<std::string, std::string> opts(config.provider_options.begin(),
                                                      config.provider_options.end());
    for (const auto& [key, value] : extra) opts[key] = value;
    try {
      options.AppendExecutionProvider_OpenVINO_V2(opts);
    } catch (const Ort::Exception& e) {
      detail::throw_error(ErrorCode::kBackend, "OpenVINO execution provider: ", e.what());
    }
  } else {
    W2SD_CHECK_ARG(config.execution_provider == "cpu", "unknown host execution provider '",
                   config.execution_provider, "'");
    W2SD_CHECK_ARG(extra.empty(), "provider options are for the OpenVINO execution provider");
  }
  return options;
}

OrtBackend::OrtBackend(const OrtBackendConfig& config) {
  load_ort_library(config.library_path);
  W2SD_CHECK_ARG(!config.unet_paths.empty(), "unet_paths must name at least one UNet model");
  W2SD_CHECK_ARG(config.unet_shape_sessions == 0 || config.execution_provider == "openvino",
                 "unet_shape_sessions: static-shape UNet sessions are for the OpenVINO "
                 "execution provider");
  impl_ = std::make_unique<Impl>(config);
  const Ort::SessionOptions& options = impl_->options;
  if (config.execution_provider == "openvino") {
    impl_->trim_dirs = openvino_trim_dirs(config);
    impl_->one_call_at_a_time = true;
  }
  MappedFileTrimmer trimmer(impl_->trim_dirs, Impl::kTrimInterval);
  const size_t n_unet_inputs = config.unet_names.inputs.size();
  W2SD_CHECK_ARG(n_unet_inputs == 2 || n_unet_inputs == 3 || n_unet_inputs == 5,
                 "UNet inputs must be 2 (unconditional), 3 (SD) or 5 (SDXL) names, got ",
                 n_unet_inputs);
  for (const auto& path : config.unet_paths) {
    impl_->unets.push_back(std::make_unique<UnetSessions>());
    impl_->unets.back()->path = path;
  }
  std::vector<bool> warmed(config.unet_paths.size(), false);
  for (const auto& [unet, shape] : config.warm_unet_shapes) {
    W2SD_CHECK_ARG(unet >= 0 && static_cast<size_t>(unet) < config.unet_paths.size(),
                   "warm_unet_shapes: UNet index ", unet, " out of range");
    impl_->unet_session(static_cast<size_t>(unet), shape);
    warmed[static_cast<size_t>(unet)] = true;
  }
  // Every UNet is loaded (and so checked) here: the unwarmed ones as a dynamic session.
  for (size_t i = 0; i < warmed.size(); ++i) {
    if (!warmed[i])
      impl_->unets[i]->dynamic = impl_->make_trimmed_unet_session(config.unet_paths[i], options);
  }
  W2SD_CHECK_ARG(config.text_encoder_paths.size() == config.text_encoder_names.size(),
                 "need one name set per text encoder path");
  W2SD_CHECK_ARG((n_unet_inputs == 2) == config.text_encoder_paths.empty(),
                 n_unet_inputs == 2 ? "an unconditional denoiser takes no text encoder"
                                    : "a conditional UNet needs a text encoder");
  for (size_t i = 0; i < config.text_encoder_paths.size(); ++i) {
    impl_->text_encoders.push_back(std::make_unique<NamedSession>(
        config.text_encoder_paths[i], config.text_encoder_names[i], options, "text encoder"));
  }
  impl_->vae_decoder =
      make_vae_decoder_session(config.vae_decoder_path, config.vae_decoder_names, options);
}

OrtBackend::~OrtBackend() = default;

int OrtBackend::num_unets() const { return static_cast<int>(impl_->unets.size()); }

int OrtBackend::num_text_encoders() const { return static_cast<int>(impl_->text_encoders.size()); }

std::vector<std::string> OrtBackend::unet_sessions(int unet) const {
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  UnetSessions& u = *impl_->unets[static_cast<size_t>(unet)];
  std::lock_guard<std::mutex> lock(u.mutex);
  std::vector<std::string> out;
  for (const auto& entry : u.by_shape) {
    out.push_back(reshape_input_option(impl_->config.unet_names.inputs, entry.first));
  }
  if (u.dynamic) out.emplace_back("dynamic");
  return out;
}

void OrtBackend::run_unet(int unet, const UnetInputs& in, float* out) {
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  NamedSession& s = impl_->unet_session(static_cast<size_t>(unet), unet_shape(in));
  const float timestep = in.timestep;
  const float lora_scale = in.lora_scale;
  impl_->run_model(&s, in.batch, in.height, in.width, [&] {
    ort_call("UNet", [&] {
      // Tensors wrap the caller's buffers: no copies, no allocation in the loop.
      UnetTensors t;
      make_unet_tensors(impl_->cpu, s, in, &timestep, &lora_scale, out, &t);
      s.session->Run(impl_->run_options, s.inputs.data(), t.inputs.data(), t.inputs.size(),
                     s.outputs.data(), &t.output, 1);
      return 0;
    });
  });
}

std::vector<HostTensor> OrtBackend::encode_text(int encoder, const int64_t* input_ids,
                                                int64_t batch, int64_t length) {
  W2SD_CHECK_ARG(encoder >= 0 && encoder < num_text_encoders(), "text encoder index ", encoder,
                 " out of range");
  NamedSession& s = *impl_->text_encoders[static_cast<size_t>(encoder)];
  std::vector<HostTensor> out;
  impl_->run_model(&s, batch, length, 0,
                   [&] { out = encode_text_on_host(s, input_ids, batch, length); });
  return out;
}

HostTensor OrtBackend::decode_latents(const float* latents, int64_t batch, int64_t channels,
                                      int64_t height, int64_t width) {
  HostTensor out;
  impl_->run_model(impl_->vae_decoder.get(), batch, height, width, [&] {
    out = decode_on_host(impl_->vae_decoder.get(), latents, batch, channels, height, width);
  });
  return out;
}

}  // namespace w2sd
