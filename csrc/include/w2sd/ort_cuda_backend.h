// InferenceBackend on ONNX Runtime's CUDA or TensorRT execution provider, with
// the UNet inputs and outputs bound to device memory (IO binding) so that the
// loop stays on the device. Each lane owns a CUDA stream and a set of UNet
// sessions running on it (`user_compute_stream`), so lanes overlap. Built
// only with W2SD_WITH_CUDA; needs the onnxruntime-gpu library at run time.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "w2sd/gpu_options.h"
#include "w2sd/inference_backend.h"
#include "w2sd/ort_models.h"

namespace w2sd {

struct OrtCudaBackendConfig {
  OrtBackendConfig base;          // models, names, library path
  std::string provider = "cuda";  // "cuda" or "tensorrt"
  int device_id = 0;
  int lanes = 1;  // concurrent requests; UNet sessions per lane
  // Provider options as key/value strings, for every model (TensorRT: trt_fp16_enable,
  // cache and context paths, ... as the manifest gives them) ...
  OptionList provider_options;
  // ... and per model kind (kUnetModel, kTextEncoderModel, kVaeDecoderModel: a TensorRT
  // profile names its model's inputs), applied after the common ones.
  std::map<std::string, OptionList> model_provider_options;
};

class OrtCudaBackend final : public InferenceBackend {
 public:
  explicit OrtCudaBackend(const OrtCudaBackendConfig& config);
  ~OrtCudaBackend() override;

  MemoryKind memory() const override { return MemoryKind::kCudaDevice; }
  int device_id() const override;
  int num_lanes() const override;
  void* stream(int lane) override;
  int num_unets() const override;
  int num_text_encoders() const override;
  // Device pointers (in.sample, in.text, ..., in.timestep_device, out).
  void run_unet(int unet, const UnetInputs& in, float* out) override;
  // Lane 0's UNet `unet`: its CUDA graphs (input shapes per graph id), or "launched" (and
  // why, when graphs were asked for and refused).
  std::vector<std::string> unet_sessions(int unet) const override;
  // Host pointers in and out: one-off calls outside the loop.
  std::vector<HostTensor> encode_text(int encoder, const int64_t* input_ids, int64_t batch,
                                      int64_t length) override;
  HostTensor decode_latents(const float* latents, int64_t batch, int64_t channels, int64_t height,
                            int64_t width) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace w2sd
