// Backend selection: the one place that knows which backends this build has.
// Each backend comes paired with the loop executor that runs it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "w2sd/ddim_schedule.h"
#include "w2sd/engine.h"
#include "w2sd/ort_models.h"
#include "w2sd/unet_shape.h"

namespace w2sd {

struct EngineConfig {
  std::string provider = "cpu";  // "cpu", "openvino", "cuda" or "tensorrt"
  OrtBackendConfig models;       // model paths, I/O names, library, threads
  SchedulerConfig scheduler;
  // The execution provider's options (OpenVINO: precision, load_config, cache_dir;
  // TensorRT: trt_fp16_enable, cache paths, ...).
  OptionList provider_options;
  // GPU providers: the CUDA device; concurrent requests, each with its stream and UNet
  // sessions; options per model kind ("unet", "text_encoder", "vae_decoder"; see
  // gpu_options.h), applied after the common ones.
  int device_id = 0;
  int lanes = 1;
  std::map<std::string, OptionList> model_provider_options;
  // OpenVINO: static-shape UNet sessions and the shapes compiled at load
  // (openvino_backend.h).
  int unet_shape_sessions = 0;
  std::vector<std::pair<int, UnetShape>> warm_unet_shapes;
};

// Loads the models into sessions of `config.provider`. Throws kBackend for a
// provider this build or machine cannot run, kInvalidArgument for an unknown one.
std::unique_ptr<Engine> make_engine(const EngineConfig& config);

struct BackendAvailability {
  bool available = false;
  std::string reason;  // why not (empty when available)
};

// Whether `provider` can run here: built into this binary, a device visible for
// GPU providers, and offered by the loaded ONNX Runtime library.
BackendAvailability backend_availability(const std::string& provider);

}  // namespace w2sd
