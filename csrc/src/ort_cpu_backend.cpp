#include "w2sd/ort_cpu_backend.h"

#include "ort_session.h"
#include "w2sd/status.h"

namespace w2sd {
using namespace ort_session;

struct OrtCpuBackend::Impl {
  Impl(const OrtBackendConfig& config, const Ort::SessionOptions& options)
      : models(config, options) {}
  std::vector<std::unique_ptr<NamedSession>> unets;
  HostModels models;
};

namespace {

Ort::SessionOptions checked_options(const OrtBackendConfig& config) {
  load_ort_library(config.library_path);
  check_models(config);
  return host_session_options(config);
}

}  // namespace

OrtCpuBackend::OrtCpuBackend(const OrtBackendConfig& config) {
  const Ort::SessionOptions options = checked_options(config);
  std::vector<std::unique_ptr<NamedSession>> unets;
  for (const auto& path : config.unet_paths) {
    unets.push_back(make_unet_session(path, config.unet_names, options));
  }
  impl_ = std::make_unique<Impl>(config, options);
  impl_->unets = std::move(unets);
}

OrtCpuBackend::~OrtCpuBackend() = default;

int OrtCpuBackend::num_unets() const { return static_cast<int>(impl_->unets.size()); }

int OrtCpuBackend::num_text_encoders() const {
  return static_cast<int>(impl_->models.text_encoders.size());
}

void OrtCpuBackend::run_unet(int unet, const UnetInputs& in, float* out) {
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  run_unet_on_host(*impl_->unets[static_cast<size_t>(unet)], in, out);
}

std::vector<HostTensor> OrtCpuBackend::encode_text(int encoder, const int64_t* input_ids,
                                                   int64_t batch, int64_t length) {
  return encode_text_on_host(impl_->models.text_encoder(encoder), input_ids, batch, length);
}

HostTensor OrtCpuBackend::decode_latents(const float* latents, int64_t batch, int64_t channels,
                                         int64_t height, int64_t width) {
  return decode_on_host(impl_->models.vae_decoder.get(), latents, batch, channels, height, width);
}

}  // namespace w2sd
