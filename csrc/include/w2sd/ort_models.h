// What every ONNX Runtime backend is given: the library, the model files and their
// input/output names, and the session settings they share.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace w2sd {

using OptionList = std::vector<std::pair<std::string, std::string>>;

struct OrtModelNames {
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
};

struct OrtBackendConfig {
  // The library to load: libonnxruntime.so.* (ONNX Runtime backends) or libopenvino_c.so.*
  // (openvino).
  std::string library_path;
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
  // ONNX Runtime's CPU memory arena: fastest for repeated calls, but it keeps what it took;
  // off, the peak is what the largest call needs (big images on a tight machine).
  bool cpu_memory_arena = true;
};

// Throws kInvalidArgument unless `config` names a loadable set of models.
void check_models(const OrtBackendConfig& config);

}  // namespace w2sd
