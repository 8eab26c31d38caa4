#include "w2sd/openvino_backend.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "openvino_models.h"
#include "w2sd/openvino_library.h"
#include "w2sd/page_trimmer.h"
#include "w2sd/status.h"

namespace w2sd {

namespace {

constexpr std::chrono::milliseconds kTrimInterval{20};
using StaticDims = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// The folders of the models: the IR weights OpenVINO memory-maps, once per model, held by
// it. Not the cache: its blobs are weightless and mapped only while one is read back.
// Symlinks resolved, as /proc/self/maps names the files.
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
  return {dirs.begin(), dirs.end()};
}

// The configured properties, with the thread count where the caller chose one.
OptionList compile_properties(const OpenVinoBackendConfig& config) {
  OptionList props = config.properties;
  if (config.models.intra_op_threads > 0) {
    props.emplace_back("INFERENCE_NUM_THREADS", std::to_string(config.models.intra_op_threads));
  }
  return props;
}

// The properties for a dynamic-shape model: the same without OpenVINO's compiled-model
// cache, which saves it nothing (it prepares its weights on each shape's first run) and costs
// a hash of the model per lookup (docs/openvino.md).
OptionList without_cache(OptionList props) {
  props.erase(std::remove_if(props.begin(), props.end(),
                             [](const auto& kv) {
                               return kv.first == "CACHE_DIR" || kv.first == "CACHE_MODE";
                             }),
              props.end());
  return props;
}

// Held while a static-shape model compiles: OpenVINO sets and restores the process locale
// on that path (the compiled-model cache, reshaping), which two threads at once leave
// clobbered ("C"). Dynamic-shape models compile concurrently.
std::mutex& static_compile_mutex() {
  static std::mutex m;
  return m;
}

// Runs every task, on threads of their own (compiling a model is mostly single-threaded),
// and rethrows the first failure once all have finished.
void run_concurrently(const std::vector<std::function<void()>>& tasks) {
  std::vector<std::future<void>> running;
  running.reserve(tasks.size());
  for (const auto& task : tasks) running.push_back(std::async(std::launch::async, task));
  std::exception_ptr first;
  for (auto& f : running) {
    try {
      f.get();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace

std::string probe_openvino() {
  if (!openvino_library_loaded()) return "OpenVINO's library is not loaded";
  try {
    // Loads the CPU plugin: a CPU that OpenVINO refuses fails here.
    ov_core_version_list_t versions{};
    ov::check(ov::api().ov_core_get_versions_by_device_name(ov::shared_core(), "CPU", &versions),
              "OpenVINO's CPU plugin");
    ov::api().ov_core_versions_free(&versions);
  } catch (const W2sdError& e) {
    return e.what();
  }
  return "";
}

// One UNet's compiled models: up to unet_shape_sessions for one static shape each, and a
// dynamic-shape one for every other shape (made when first needed). Entries are never
// removed, so a model handed out stays valid while other threads add shapes.
struct UnetModels {
  std::string path;
  std::mutex mutex;
  std::map<UnetShape, std::unique_ptr<ov::CompiledModel>> by_shape;
  std::unique_ptr<ov::CompiledModel> dynamic;
};

struct OpenVinoBackend::Impl {
  explicit Impl(const OpenVinoBackendConfig& c)
      : config(c),
        properties(compile_properties(c)),
        dynamic_properties(without_cache(properties)),
        trim_dirs(mapped_dirs(c)) {}

  OpenVinoBackendConfig config;
  OptionList properties;          // static-shape models: through the compiled-model cache
  OptionList dynamic_properties;  // dynamic-shape models: compiled directly
  std::vector<std::unique_ptr<UnetModels>> unets;
  std::vector<std::unique_ptr<ov::CompiledModel>> text_encoders;
  std::unique_ptr<ov::CompiledModel> vae_decoder;
  // The folders whose mapped weights are trimmed (see page_trimmer.h) while models are
  // compiled and during each model's first run of a shape, when the CPU plugin reads them.
  std::vector<std::string> trim_dirs;
  std::mutex seen_mutex;
  std::set<std::tuple<const void*, int64_t, int64_t, int64_t>> seen;  // shapes run, per model
  // One model call at a time: each call already runs on every core (and each compiled model
  // has one infer request).
  std::mutex call_mutex;

  // `run()` one call at a time, trimming the mapped weights while it runs if this is the
  // first run of (model, batch, height, width).
  template <class Run>
  void run_model(const void* model, int64_t batch, int64_t height, int64_t width, Run&& run) {
    std::lock_guard<std::mutex> turn(call_mutex);
    const auto key = std::make_tuple(model, batch, height, width);
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

  // A model compiled with the mapped weights trimmed while OpenVINO reads them, and the heap
  // it freed returned.
  std::unique_ptr<ov::CompiledModel> compile(const std::string& path, const OrtModelNames& names,
                                             const StaticDims& dims, bool unet, const char* what) {
    std::unique_lock<std::mutex> one_static_at_a_time(static_compile_mutex(), std::defer_lock);
    if (!dims.empty()) one_static_at_a_time.lock();
    MappedFileTrimmer trimmer(trim_dirs, kTrimInterval);
    const OptionList& props = dims.empty() ? dynamic_properties : properties;
    auto model = std::make_unique<ov::CompiledModel>(path, names, props, dims, unet, what);
    release_free_heap();
    return model;
  }

  // The model that runs UNet `unet` at `shape`, compiled if it has none yet. Compiling holds
  // this UNet's lock: its other calls wait, once per shape.
  ov::CompiledModel& unet_model(size_t unet, const UnetShape& shape) {
    UnetModels& u = *unets[unet];
    std::lock_guard<std::mutex> lock(u.mutex);
    const auto capacity = static_cast<size_t>(std::max(config.unet_shape_sessions, 0));
    if (capacity > 0) {
      const auto found = u.by_shape.find(shape);
      if (found != u.by_shape.end()) return *found->second;
      if (u.by_shape.size() < capacity) {
        const StaticDims dims = unet_input_dims(config.models.unet_names.inputs, shape);
        auto model = compile(u.path, config.models.unet_names, dims, true, "UNet");
        return *u.by_shape.emplace(shape, std::move(model)).first->second;
      }
    }
    if (!u.dynamic) u.dynamic = compile(u.path, config.models.unet_names, {}, true, "UNet");
    return *u.dynamic;
  }
};

OpenVinoBackend::OpenVinoBackend(const OpenVinoBackendConfig& config) {
  load_openvino_library(config.models.library_path);
  check_models(config.models);
  impl_ = std::make_unique<Impl>(config);
  const OrtBackendConfig& m = config.models;
  for (const auto& path : m.unet_paths) {
    impl_->unets.push_back(std::make_unique<UnetModels>());
    impl_->unets.back()->path = path;
  }
  // Each UNet's warm shapes, in the configured order (the first ones take its static places).
  std::vector<std::vector<UnetShape>> warm(m.unet_paths.size());
  for (const auto& [unet, shape] : config.warm_unet_shapes) {
    W2SD_CHECK_ARG(unet >= 0 && static_cast<size_t>(unet) < m.unet_paths.size(),
                   "warm_unet_shapes: UNet index ", unet, " out of range");
    warm[static_cast<size_t>(unet)].push_back(shape);
  }
  // Every model is compiled here, each on a thread of its own: a UNet at its warm shapes,
  // one after another, or as one dynamic model (so every UNet is loaded and checked), the
  // text encoders and the VAE.
  Impl& impl = *impl_;
  impl.text_encoders.resize(m.text_encoder_paths.size());
  std::vector<std::function<void()>> tasks;
  for (size_t i = 0; i < warm.size(); ++i) {
    tasks.emplace_back([&impl, &m, &warm, i] {
      for (const auto& shape : warm[i]) impl.unet_model(i, shape);
      if (warm[i].empty())
        impl.unets[i]->dynamic = impl.compile(m.unet_paths[i], m.unet_names, {}, true, "UNet");
    });
  }
  for (size_t i = 0; i < m.text_encoder_paths.size(); ++i) {
    tasks.emplace_back([&impl, &m, i] {
      impl.text_encoders[i] =
          impl.compile(m.text_encoder_paths[i], m.text_encoder_names[i], {}, false, "text encoder");
    });
  }
  if (!m.vae_decoder_path.empty()) {
    tasks.emplace_back([&impl, &m] {
      impl.vae_decoder =
          impl.compile(m.vae_decoder_path, m.vae_decoder_names, {}, false, "VAE decoder");
    });
  }
  run_concurrently(tasks);
}

OpenVinoBackend::~OpenVinoBackend() = default;

int OpenVinoBackend::num_unets() const { return static_cast<int>(impl_->unets.size()); }

int OpenVinoBackend::num_text_encoders() const {
  return static_cast<int>(impl_->text_encoders.size());
}

std::vector<std::string> OpenVinoBackend::unet_sessions(int unet) const {
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  UnetModels& u = *impl_->unets[static_cast<size_t>(unet)];
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
  ov::CompiledModel& m = impl_->unet_model(static_cast<size_t>(unet), unet_shape(in));
  impl_->run_model(&m, in.batch, in.height, in.width, [&] { ov::run_unet(m, in, out); });
}

std::vector<HostTensor> OpenVinoBackend::encode_text(int encoder, const int64_t* input_ids,
                                                     int64_t batch, int64_t length) {
  W2SD_CHECK_ARG(encoder >= 0 && encoder < num_text_encoders(), "text encoder index ", encoder,
                 " out of range");
  ov::CompiledModel& m = *impl_->text_encoders[static_cast<size_t>(encoder)];
  std::vector<HostTensor> out;
  impl_->run_model(&m, batch, length, 0,
                   [&] { out = ov::encode_text(m, input_ids, batch, length); });
  return out;
}

HostTensor OpenVinoBackend::decode_latents(const float* latents, int64_t batch, int64_t channels,
                                           int64_t height, int64_t width) {
  ov::CompiledModel* vae = impl_->vae_decoder.get();
  W2SD_CHECK_ARG(vae != nullptr, "this engine has no VAE decoder: ask for output_type='latent'");
  HostTensor out;
  impl_->run_model(vae, batch, height, width,
                   [&] { out = ov::decode(*vae, latents, batch, channels, height, width); });
  return out;
}

}  // namespace w2sd
