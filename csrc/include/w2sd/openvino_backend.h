// InferenceBackend on OpenVINO's own runtime (its C API, libopenvino_c loaded at run time; CPU
// device; bf16 through INFERENCE_PRECISION_HINT), host memory. Each UNet is compiled for the
// static input shapes it runs (up to unet_shape_sessions), with one dynamic-shape model for
// any other shape; the weights OpenVINO maps are trimmed while it reads them; one model call
// at a time.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "w2sd/inference_backend.h"
#include "w2sd/ort_models.h"
#include "w2sd/unet_shape.h"

namespace w2sd {

struct OpenVinoBackendConfig {
  // The model files (ONNX or OpenVINO IR) and their input/output names; library_path is
  // OpenVINO's C library (libopenvino_c.so.*), intra_op_threads its INFERENCE_NUM_THREADS.
  OrtBackendConfig models;
  // OpenVINO properties for every model compiled (INFERENCE_PRECISION_HINT, CACHE_DIR, ...).
  OptionList properties;
  // Static-shape compiled models per UNet (0: one dynamic-shape model per UNet). Dynamic
  // shapes make OpenVINO's CPU plugin re-prepare its kernels whenever the batch changes.
  int unet_shape_sessions = 0;
  // Shapes compiled while loading, so that a first request runs at full speed: {unet index,
  // shape}. A UNet with none gets its dynamic model at load (every model is checked then).
  std::vector<std::pair<int, UnetShape>> warm_unet_shapes;
};

// "" if OpenVINO's library is loaded and its CPU plugin loads on this CPU, else why.
std::string probe_openvino();

class OpenVinoBackend final : public InferenceBackend {
 public:
  explicit OpenVinoBackend(const OpenVinoBackendConfig& config);
  ~OpenVinoBackend() override;

  int num_unets() const override;
  std::vector<std::string> unet_sessions(int unet) const override;
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
