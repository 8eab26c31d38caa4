// InferenceBackend on ONNX Runtime's CPU execution provider, host memory: one session
// per distinct UNet artifact, per text encoder, one for the VAE decoder.
#pragma once

#include <memory>

#include "w2sd/inference_backend.h"
#include "w2sd/ort_models.h"

namespace w2sd {

class OrtCpuBackend final : public InferenceBackend {
 public:
  explicit OrtCpuBackend(const OrtBackendConfig& config);
  ~OrtCpuBackend() override;

  int num_unets() const override;
  void run_unet(int unet, const UnetInputs& in, float* out) override;
  int num_text_encoders() const override;
  std::vector<HostTensor> encode_text(int encoder, const int64_t* input_ids, int64_t batch,
                                      int64_t length) override;
  HostTensor decode_latents(const float* latents, int64_t batch, int64_t channels, int64_t height,
                            int64_t width) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace w2sd
