#include "w2sd/ort_backend.h"

#include <array>
#include <filesystem>
#include <unordered_map>

#include "ort_session.h"
#include "w2sd/ort_library.h"
#include "w2sd/status.h"

namespace w2sd {
using namespace ort_session;

struct OrtBackend::Impl {
  Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::RunOptions run_options;
  std::vector<std::unique_ptr<NamedSession>> unets;
  std::vector<std::unique_ptr<NamedSession>> text_encoders;
  std::unique_ptr<NamedSession> vae_decoder;
};

Ort::SessionOptions host_session_options(const OrtBackendConfig& config) {
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
    const std::unordered_map<std::string, std::string> opts(config.provider_options.begin(),
                                                            config.provider_options.end());
    try {
      options.AppendExecutionProvider_OpenVINO_V2(opts);
    } catch (const Ort::Exception& e) {
      detail::throw_error(ErrorCode::kBackend, "OpenVINO execution provider: ", e.what());
    }
  } else {
    W2SD_CHECK_ARG(config.execution_provider == "cpu", "unknown host execution provider '",
                   config.execution_provider, "'");
  }
  return options;
}

OrtBackend::OrtBackend(const OrtBackendConfig& config) {
  load_ort_library(config.library_path);
  W2SD_CHECK_ARG(!config.unet_paths.empty(), "unet_paths must name at least one UNet model");
  impl_ = std::make_unique<Impl>();
  const Ort::SessionOptions options = host_session_options(config);
  const size_t n_unet_inputs = config.unet_names.inputs.size();
  W2SD_CHECK_ARG(n_unet_inputs == 2 || n_unet_inputs == 3 || n_unet_inputs == 5,
                 "UNet inputs must be 2 (unconditional), 3 (SD) or 5 (SDXL) names, got ",
                 n_unet_inputs);
  for (const auto& path : config.unet_paths) {
    impl_->unets.push_back(make_unet_session(path, config.unet_names, options));
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

void OrtBackend::run_unet(int unet, const UnetInputs& in, float* out) {
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  NamedSession& s = *impl_->unets[static_cast<size_t>(unet)];
  const float timestep = in.timestep;
  const float lora_scale = in.lora_scale;
  ort_call("UNet", [&] {
    // Tensors wrap the caller's buffers: no copies, no allocation in the loop.
    UnetTensors t;
    make_unet_tensors(impl_->cpu, s, in, &timestep, &lora_scale, out, &t);
    s.session->Run(impl_->run_options, s.inputs.data(), t.inputs.data(), t.inputs.size(),
                   s.outputs.data(), &t.output, 1);
    return 0;
  });
}

std::vector<HostTensor> OrtBackend::encode_text(int encoder, const int64_t* input_ids,
                                                int64_t batch, int64_t length) {
  W2SD_CHECK_ARG(encoder >= 0 && encoder < num_text_encoders(), "text encoder index ", encoder,
                 " out of range");
  return encode_text_on_host(*impl_->text_encoders[static_cast<size_t>(encoder)], input_ids, batch,
                             length);
}

HostTensor OrtBackend::decode_latents(const float* latents, int64_t batch, int64_t channels,
                                      int64_t height, int64_t width) {
  return decode_on_host(impl_->vae_decoder.get(), latents, batch, channels, height, width);
}

}  // namespace w2sd
