#include "w2sd/ort_cuda_backend.h"

#include <cuda_runtime.h>

#include <array>

#include "../ort_session.h"
#include "w2sd/cuda/kernels.h"
#include "w2sd/ort_library.h"
#include "w2sd/status.h"

namespace w2sd {
using namespace ort_session;

namespace {

// One model kind's session options on `stream`: the provider options common to every
// model, then the kind's own.
Ort::SessionOptions model_session_options(const OrtCudaBackendConfig& config, const char* kind,
                                          cudaStream_t stream) {
  const auto it = config.model_provider_options.find(kind);
  const OptionList own = it == config.model_provider_options.end() ? OptionList{} : it->second;
  if (config.provider == "tensorrt") {
    return gpu_session_options(
        "tensorrt", cuda_provider_options(config.device_id, {}),
        tensorrt_provider_options(config.device_id, config.provider_options, own), stream);
  }
  return gpu_session_options(
      "cuda", cuda_provider_options(config.device_id, merge_options(config.provider_options, own)),
      {}, stream);
}

}  // namespace

struct OrtCudaBackend::Impl {
  OrtCudaBackendConfig config;
  std::vector<cudaStream_t> streams;                              // one per lane
  std::vector<std::vector<std::unique_ptr<NamedSession>>> unets;  // [lane][unet]
  std::vector<std::unique_ptr<NamedSession>> text_encoders;
  std::unique_ptr<NamedSession> vae_decoder;
  Ort::MemoryInfo device_memory{nullptr};

  ~Impl() {
    unets.clear();
    text_encoders.clear();
    vae_decoder.reset();
    try {
      cuda::DeviceScope device(config.device_id);
      for (cudaStream_t s : streams) cudaStreamDestroy(s);
    } catch (const W2sdError&) {  // the device is gone: nothing left to destroy
    }
  }
};

OrtCudaBackend::OrtCudaBackend(const OrtCudaBackendConfig& config) {
  load_ort_library(config.base.library_path);
  W2SD_CHECK_ARG(config.provider == "cuda" || config.provider == "tensorrt",
                 "provider must be 'cuda' or 'tensorrt', got '", config.provider, "'");
  W2SD_CHECK_ARG(config.lanes >= 1, "lanes must be >= 1");
  if (cuda::device_count() <= config.device_id) {
    detail::throw_error(ErrorCode::kBackend, "CUDA device ", config.device_id,
                        " is not available (devices visible: ", cuda::device_count(), ")");
  }
  for (const auto& kv : config.model_provider_options) {
    W2SD_CHECK_ARG(
        kv.first == kUnetModel || kv.first == kTextEncoderModel || kv.first == kVaeDecoderModel,
        "model_provider_options: unknown model kind '", kv.first, "'");
  }
  cuda::DeviceScope device(config.device_id);
  impl_ = std::make_unique<Impl>();
  impl_->config = config;
  impl_->device_memory =
      Ort::MemoryInfo("Cuda", OrtDeviceAllocator, config.device_id, OrtMemTypeDefault);
  for (int lane = 0; lane < config.lanes; ++lane) {
    cudaStream_t s = nullptr;
    cuda::check_cuda(static_cast<int>(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)),
                     "cudaStreamCreate");
    impl_->streams.push_back(s);
    const Ort::SessionOptions options = ort_call(
        "UNet session options", [&] { return model_session_options(config, kUnetModel, s); });
    std::vector<std::unique_ptr<NamedSession>> lane_unets;
    for (const auto& path : config.base.unet_paths) {
      lane_unets.push_back(make_unet_session(path, config.base.unet_names, options));
    }
    impl_->unets.push_back(std::move(lane_unets));
  }
  // One-off calls outside the loop (host in, host out, from any thread): on ONNX Runtime's
  // own streams, so that they never queue behind a lane's loop or each other's calls.
  cudaStream_t s0 = nullptr;
  if (!config.base.text_encoder_paths.empty()) {
    const Ort::SessionOptions options = ort_call("text encoder session options", [&] {
      return model_session_options(config, kTextEncoderModel, s0);
    });
    for (size_t i = 0; i < config.base.text_encoder_paths.size(); ++i) {
      impl_->text_encoders.push_back(std::make_unique<NamedSession>(
          config.base.text_encoder_paths[i], config.base.text_encoder_names[i], options,
          "text encoder"));
    }
  }
  if (!config.base.vae_decoder_path.empty()) {
    const Ort::SessionOptions options = ort_call("VAE decoder session options", [&] {
      return model_session_options(config, kVaeDecoderModel, s0);
    });
    impl_->vae_decoder = make_vae_decoder_session(config.base.vae_decoder_path,
                                                  config.base.vae_decoder_names, options);
  }
}

OrtCudaBackend::~OrtCudaBackend() = default;

int OrtCudaBackend::device_id() const { return impl_->config.device_id; }

int OrtCudaBackend::num_lanes() const { return static_cast<int>(impl_->streams.size()); }

void* OrtCudaBackend::stream(int lane) {
  W2SD_CHECK_ARG(lane >= 0 && lane < num_lanes(), "lane ", lane, " out of range");
  return impl_->streams[static_cast<size_t>(lane)];
}

int OrtCudaBackend::num_unets() const {
  return static_cast<int>(impl_->config.base.unet_paths.size());
}

int OrtCudaBackend::num_text_encoders() const {
  return static_cast<int>(impl_->text_encoders.size());
}

void OrtCudaBackend::run_unet(int unet, const UnetInputs& in, float* out) {
  W2SD_CHECK_ARG(in.lane >= 0 && in.lane < num_lanes(), "lane ", in.lane, " out of range");
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  W2SD_CHECK_ARG(in.timestep_device != nullptr, "device UNet calls need timestep_device");
  NamedSession& s = *impl_->unets[static_cast<size_t>(in.lane)][static_cast<size_t>(unet)];
  cuda::DeviceScope device(impl_->config.device_id);
  ort_call("UNet (CUDA)", [&] {
    UnetTensors t;
    make_unet_tensors(impl_->device_memory, s, in, in.timestep_device, in.lora_scale_device, out,
                      &t);
    Ort::IoBinding binding(*s.session);
    for (size_t i = 0; i < t.inputs.size(); ++i) binding.BindInput(s.inputs[i], t.inputs[i]);
    binding.BindOutput(s.outputs[0], t.output);
    Ort::RunOptions run_options;
    // Work stays queued on the lane's stream; the next kernel is ordered after it.
    run_options.AddConfigEntry("disable_synchronize_execution_providers", "1");
    s.session->Run(run_options, binding);
    return 0;
  });
}

std::vector<HostTensor> OrtCudaBackend::encode_text(int encoder, const int64_t* input_ids,
                                                    int64_t batch, int64_t length) {
  W2SD_CHECK_ARG(encoder >= 0 && encoder < num_text_encoders(), "text encoder index ", encoder,
                 " out of range");
  cuda::DeviceScope device(impl_->config.device_id);
  return encode_text_on_host(*impl_->text_encoders[static_cast<size_t>(encoder)], input_ids, batch,
                             length);
}

HostTensor OrtCudaBackend::decode_latents(const float* latents, int64_t batch, int64_t channels,
                                          int64_t height, int64_t width) {
  cuda::DeviceScope device(impl_->config.device_id);
  return decode_on_host(impl_->vae_decoder.get(), latents, batch, channels, height, width);
}

}  // namespace w2sd
