// OpenVINO models for the backend: read (ONNX or IR), optionally fixed to static shapes,
// compiled for the CPU with one infer request, and run on tensors that wrap the caller's
// host memory. Internal to openvino_backend.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "openvino_api.h"
#include "w2sd/inference_backend.h"
#include "w2sd/ort_models.h"

namespace w2sd::ov {

// The process's one OpenVINO core (made on first use, kept for the life of the process).
ov_core_t* shared_core();

// A compiled model and its infer request. Not copyable; one call at a time.
class CompiledModel {
 public:
  // Reads `path`, checks that it has `names`' inputs (and takes "lora_scale" where it has
  // one, if `optional_lora_scale`), fixes the inputs in `static_dims` and compiles it for the
  // CPU with `properties`. Throws kNotFound for a missing file, kInvalidArgument for a
  // missing input, kBackend for what OpenVINO refuses.
  CompiledModel(const std::string& path, const OrtModelNames& names, const OptionList& properties,
                const std::vector<std::pair<std::string, std::vector<int64_t>>>& static_dims,
                bool optional_lora_scale, const char* what);
  ~CompiledModel();
  CompiledModel(const CompiledModel&) = delete;
  CompiledModel& operator=(const CompiledModel&) = delete;

  // Binds a float32 or int64 input wrapping `data` (no copy).
  void set_input(size_t index, ov_element_type_e type, const void* data,
                 const std::vector<int64_t>& shape);
  // Binds output `index` to `data` (OpenVINO writes there: no copy).
  void set_output(size_t index, float* data, const std::vector<int64_t>& shape);
  void infer();
  // Output `index` of the last call, copied to the host.
  HostTensor output(size_t index) const;

  const std::vector<std::string>& inputs() const { return inputs_; }
  const std::vector<std::string>& outputs() const { return outputs_; }
  bool has_lora_scale() const { return has_lora_scale_; }

 private:
  const char* what_;
  std::vector<std::string> inputs_, outputs_;
  bool has_lora_scale_ = false;
  ov_compiled_model_t* compiled_ = nullptr;
  ov_infer_request_t* request_ = nullptr;
};

// One UNet call: the inputs wrap `in`'s buffers, the output is written into `out`.
void run_unet(CompiledModel& m, const UnetInputs& in, float* out);

// input_ids (batch, length) -> every output of a text encoder.
std::vector<HostTensor> encode_text(CompiledModel& m, const int64_t* input_ids, int64_t batch,
                                    int64_t length);

// Latents (batch, c, h, w) -> the decoder's first output.
HostTensor decode(CompiledModel& m, const float* latents, int64_t batch, int64_t channels,
                  int64_t height, int64_t width);

}  // namespace w2sd::ov
