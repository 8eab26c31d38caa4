// The input shapes of one UNet call, as a key: OpenVINO compiles a model for the shapes it
// is given, and a UNet compiled for one static shape runs faster than a dynamic-shape one
// (see OpenVinoBackendConfig::unet_shape_sessions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "w2sd/inference_backend.h"

namespace w2sd {

struct UnetShape {
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int64_t text_len = 0, text_dim = 0;        // encoder_hidden_states; 0: unconditional
  int64_t pooled_dim = 0, time_ids_dim = 0;  // SDXL's added conditions; 0: none

  auto key() const {
    return std::tie(batch, channels, height, width, text_len, text_dim, pooled_dim, time_ids_dim);
  }
  bool operator<(const UnetShape& o) const { return key() < o.key(); }
  bool operator==(const UnetShape& o) const { return key() == o.key(); }
};

// The shapes `in` gives the UNet's inputs.
UnetShape unet_shape(const UnetInputs& in);

// Throws kInvalidArgument unless `in` carries the conditioning a UNet with `n_inputs` inputs
// (2 unconditional, 3 SD, 5 SDXL; the LoRA scale not counted) takes.
void check_unet_inputs(size_t n_inputs, const UnetInputs& in);

// A UNet's inputs fixed to `s`, as OpenVinoBackend::unet_sessions names a static shape:
// "sample[2,4,32,32],timestep[1],encoder_hidden_states[2,77,768]". `names` are the UNet's
// configured inputs in the order make_unet_tensors binds them: sample, timestep, then
// encoder_hidden_states (and text_embeds, time_ids for SDXL). A LoRA scale input is [1] in
// every export and needs no fixing.
std::string reshape_input_option(const std::vector<std::string>& names, const UnetShape& s);

// The same fixing as {input name, dims} pairs, in that order (what OpenVINO's reshape takes).
std::vector<std::pair<std::string, std::vector<int64_t>>> unet_input_dims(
    const std::vector<std::string>& names, const UnetShape& s);

}  // namespace w2sd
