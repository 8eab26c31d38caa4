// InferenceBackend on ONNX Runtime with host memory: the CPU execution provider,
// or the OpenVINO one (CPU device; bf16 through OpenVINO's load_config). One
// session per distinct UNet artifact (OpenVINO: per UNet input shape, see
// unet_shape_sessions), per text encoder, one for the VAE decoder.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "w2sd/inference_backend.h"
#include "w2sd/ort_api.h"
#include "w2sd/unet_shape.h"

namespace w2sd {

struct OrtModelNames {
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
};

struct OrtBackendConfig {
  std::string library_path;                     // libonnxruntime.so.* to load
  std::vector<std::string> unet_paths;          // one per distinct UNet artifact
  std::vector<std::string> text_encoder_paths;  // one (SD 1.x/2.x) or two (SDXL)
  std::string vae_decoder_path;
  // {sample, timestep, encoder_hidden_states[, text_embeds, time_ids]} -> {out}
  OrtModelNames unet_names{{"sample", "timestep", "encoder_hidden_states"}, {"out_sample"}};
  std::vector<OrtModelNames> text_encoder_names;  // per encoder: {input_ids} -> outputs
  OrtModelNames vae_decoder_names{{"latent_sample"}, {"sample"}};
  int intra_op_threads = 0;  // 0: ONNX Runtime's default (one per physical core)
  // 0 disable, 1 basic, 2 extended, 99 all (GraphOptimizationLevel)
  int graph_optimization_level = 99;
  // Host execution provider: "cpu" (ONNX Runtime's own kernels) or "openvino".
  std::string execution_provider = "cpu";
  // Options of that provider as key/value strings (OpenVINO: device_type, precision,
  // load_config, cache_dir, num_of_threads, num_streams).
  std::vector<std::pair<std::string, std::string>> provider_options;
  // ONNX Runtime's CPU memory arena: fastest for repeated calls, but it grows in powers of
  // two and keeps what it took; off, each activation is allocated and freed as needed
  // (the peak is what the largest call needs: SDXL at 1024 px on a 24 GiB machine).
  bool cpu_memory_arena = true;
  // OpenVINO: compile each UNet for the static input shapes it runs, up to this many shapes
  // per UNet; any other shape runs on one dynamic-shape session, made when first needed. With
  // dynamic shapes OpenVINO's CPU plugin re-prepares its kernels whenever the batch changes
  // (a reflection step alternates the guided batch 2B and the unguided B) and runs generic
  // ones: sd15-256's loop took 14% longer. 0: one dynamic-shape session per UNet.
  int unet_shape_sessions = 0;
  // Shapes compiled while loading (those the engine's default request runs), so that a first
  // request runs at full speed: {unet index, shape}. A UNet with none gets its dynamic
  // session at load, so that every model is checked before the first request.
  std::vector<std::pair<int, UnetShape>> warm_unet_shapes;
};

// Session options for `config` (threads, optimisation level, execution provider, with
// `extra` provider options); throws kBackend naming the provider if it cannot be appended.
Ort::SessionOptions host_session_options(
    const OrtBackendConfig& config,
    const std::vector<std::pair<std::string, std::string>>& extra = {});

class OrtBackend final : public InferenceBackend {
 public:
  explicit OrtBackend(const OrtBackendConfig& config);
  ~OrtBackend() override;

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
