#include "w2sd/openvino_backend.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>

#include "ort_session.h"
#include "w2sd/page_trimmer.h"
#include "w2sd/status.h"

namespace w2sd {
using namespace ort_session;

namespace {

constexpr std::chrono::milliseconds kTrimInterval{20};

// Host session options with the OpenVINO execution provider appended (its options, then
// `extra`); throws kBackend if it cannot be.
Ort::SessionOptions openvino_session_options(const OrtBackendConfig& models,
                                             const OptionList& provider_options,
                                             const OptionList& extra = {}) {
  Ort::SessionOptions options = host_session_options(models);
  std::unordered_map<std::string, std::string> opts(provider_options.begin(),
                                                    provider_options.end());
  for (const auto& [key, value] : extra) opts[key] = value;
  try {
    options.AppendExecutionProvider_OpenVINO_V2(opts);
  } catch (const Ort::Exception& e) {
    detail::throw_error(ErrorCode::kBackend, "OpenVINO execution provider: ", e.what());
  }
  return options;
}

// The folders of the models and of OpenVINO's cache: what OpenVINO memory-maps. Symlinks
// resolved, as /proc/self/maps names the files.
std::vector<std::string> mapped_dirs(const OpenVinoBackendConfig& config) {
  auto resolved = [](const std::string& p) {
    std::error_code error;
    const auto r = std::filesystem::weakly_canonical(p, error);
    return error ? std::filesystem::absolute(p).lexically_normal() : r;
  };
  const OrtBackendConfig& m = config.models;
  std::vector<std::string> paths = m.unet_paths;
  paths.insert(paths.end(), m.text_encoder_paths.begin(), m.text_encoder_paths.end());
  paths.push_back(m.vae_decoder_path);
  std::set<std::string> dirs;
  for (const auto& p : paths) {
    if (!p.empty()) dirs.insert(resolved(p).parent_path().string());
  }
  for (const auto& [key, value] : config.provider_options) {
    if (key == "cache_dir" && !value.empty()) dirs.insert(resolved(value).string());
  }
  return {dirs.begin(), dirs.end()};
}

}  // namespace

std::string probe_openvino(const std::string& library_path) {
  OrtBackendConfig probe;
  probe.library_path = library_path;
  try {
    openvino_session_options(probe, {{"device_type", "CPU"}});
  } catch (const W2sdError& e) {
    return e.what();
  }
  return "";
}

// One UNet's sessions: up to unet_shape_sessions compiled for one static shape each, and a
// dynamic-shape one for every other shape (made when first needed). Entries are never
// removed, so a session handed out stays valid while other threads add shapes.
struct UnetSessions {
  std::string path;
  std::mutex mutex;
  std::map<UnetShape, std::unique_ptr<NamedSession>> by_shape;
  std::unique_ptr<NamedSession> dynamic;
};

struct OpenVinoBackend::Impl {
  explicit Impl(const OpenVinoBackendConfig& c)
      : config(c),
        options(openvino_session_options(c.models, c.provider_options)),
        trim_dirs(mapped_dirs(c)) {}

  OpenVinoBackendConfig config;
  Ort::SessionOptions options;  // dynamic shapes
  std::vector<std::unique_ptr<UnetSessions>> unets;
  std::unique_ptr<HostModels> models;
  // The folders whose mapped weights are trimmed (see page_trimmer.h) while sessions are
  // made and during each model's first run of a shape, when the CPU plugin reads them.
  std::vector<std::string> trim_dirs;
  std::mutex seen_mutex;
  std::set<std::tuple<const void*, int64_t, int64_t, int64_t>> seen;  // shapes run, per session
  // One model call at a time: each call already runs on every core.
  std::mutex call_mutex;

  // `run()` one call at a time, trimming the mapped weights while it runs if this is the
  // first run of (session, batch, height, width).
  template <class Run>
  void run_model(const void* session, int64_t batch, int64_t height, int64_t width, Run&& run) {
    std::lock_guard<std::mutex> turn(call_mutex);
    const auto key = std::make_tuple(session, batch, height, width);
    bool first = false;
    {
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
        const Ort::SessionOptions fixed = openvino_session_options(
            config.models, config.provider_options,
            {{"reshape_input", reshape_input_option(config.models.unet_names.inputs, shape)}});
        return *u.by_shape.emplace(shape, trimmed_unet_session(u.path, fixed)).first->second;
      }
    }
    if (!u.dynamic) u.dynamic = trimmed_unet_session(u.path, options);
    return *u.dynamic;
  }

  // A UNet session, its mapped weights trimmed while OpenVINO compiles it and the heap it
  // freed returned.
  std::unique_ptr<NamedSession> trimmed_unet_session(const std::string& path,
                                                     const Ort::SessionOptions& o) {
    MappedFileTrimmer trimmer(trim_dirs, kTrimInterval);
    auto session = make_unet_session(path, config.models.unet_names, o);
    release_free_heap();
    return session;
  }
};

OpenVinoBackend::OpenVinoBackend(const OpenVinoBackendConfig& config) {
  load_ort_library(config.models.library_path);
  check_models(config.models);
  impl_ = std::make_unique<Impl>(config);
  MappedFileTrimmer trimmer(impl_->trim_dirs, kTrimInterval);
  const std::vector<std::string>& paths = config.models.unet_paths;
  for (const auto& path : paths) {
    impl_->unets.push_back(std::make_unique<UnetSessions>());
    impl_->unets.back()->path = path;
  }
  std::vector<bool> warmed(paths.size(), false);
  for (const auto& [unet, shape] : config.warm_unet_shapes) {
    W2SD_CHECK_ARG(unet >= 0 && static_cast<size_t>(unet) < paths.size(),
                   "warm_unet_shapes: UNet index ", unet, " out of range");
    impl_->unet_session(static_cast<size_t>(unet), shape);
    warmed[static_cast<size_t>(unet)] = true;
  }
  // Every UNet is loaded (and so checked) here: the unwarmed ones as a dynamic session.
  for (size_t i = 0; i < warmed.size(); ++i) {
    if (!warmed[i])
      impl_->unets[i]->dynamic = impl_->trimmed_unet_session(paths[i], impl_->options);
  }
  impl_->models = std::make_unique<HostModels>(config.models, impl_->options);
}

OpenVinoBackend::~OpenVinoBackend() = default;

int OpenVinoBackend::num_unets() const { return static_cast<int>(impl_->unets.size()); }

int OpenVinoBackend::num_text_encoders() const {
  return static_cast<int>(impl_->models->text_encoders.size());
}

std::vector<std::string> OpenVinoBackend::unet_sessions(int unet) const {
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  UnetSessions& u = *impl_->unets[static_cast<size_t>(unet)];
  std::lock_guard<std::mutex> lock(u.mutex);
  std::vector<std::string> out;
  for (const auto& entry : u.by_shape) {
    out.push_back(reshape_input_option(impl_->config.models.unet_names.inputs, entry.first));
  }
  if (u.dynamic) out.emplace_back("dynamic");
  return out;
}

void OpenVinoBackend::run_unet(int unet, const UnetInputs& in, float* out) {
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  NamedSession& s = impl_->unet_session(static_cast<size_t>(unet), unet_shape(in));
  impl_->run_model(&s, in.batch, in.height, in.width, [&] { run_unet_on_host(s, in, out); });
}

std::vector<HostTensor> OpenVinoBackend::encode_text(int encoder, const int64_t* input_ids,
                                                     int64_t batch, int64_t length) {
  NamedSession& s = impl_->models->text_encoder(encoder);
  std::vector<HostTensor> out;
  impl_->run_model(&s, batch, length, 0,
                   [&] { out = encode_text_on_host(s, input_ids, batch, length); });
  return out;
}

HostTensor OpenVinoBackend::decode_latents(const float* latents, int64_t batch, int64_t channels,
                                           int64_t height, int64_t width) {
  NamedSession* vae = impl_->models->vae_decoder.get();
  HostTensor out;
  impl_->run_model(vae, batch, height, width,
                   [&] { out = decode_on_host(vae, latents, batch, channels, height, width); });
  return out;
}

}  // namespace w2sd
