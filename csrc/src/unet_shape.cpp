#include "w2sd/unet_shape.h"

#include <sstream>

#include "w2sd/status.h"

namespace w2sd {

UnetShape unet_shape(const UnetInputs& in) {
  UnetShape s;
  s.batch = in.batch;
  s.channels = in.channels;
  s.height = in.height;
  s.width = in.width;
  if (in.text != nullptr) {
    s.text_len = in.text_len;
    s.text_dim = in.text_dim;
  }
  if (in.text_embeds != nullptr) {
    s.pooled_dim = in.pooled_dim;
    s.time_ids_dim = in.time_ids_dim;
  }
  return s;
}

void check_unet_inputs(size_t n_inputs, const UnetInputs& in) {
  const bool added = n_inputs == 5;
  const bool conditional = n_inputs >= 3;
  W2SD_CHECK_ARG(added == (in.text_embeds != nullptr && in.time_ids != nullptr),
                 added ? "this UNet needs text_embeds and time_ids (SDXL)"
                       : "this UNet takes no text_embeds/time_ids");
  W2SD_CHECK_ARG(conditional == (in.text != nullptr),
                 conditional ? "this UNet needs encoder_hidden_states (text conditioning)"
                             : "this denoiser is unconditional: it takes no text conditioning");
}

std::vector<std::pair<std::string, std::vector<int64_t>>> unet_input_dims(
    const std::vector<std::string>& names, const UnetShape& s) {
  const size_t n = names.size();
  W2SD_CHECK_ARG(n == 2 || n == 3 || n == 5,
                 "UNet inputs must be 2 (unconditional), 3 (SD) or 5 (SDXL) names, got ", n);
  W2SD_CHECK_ARG((n >= 3) == (s.text_len > 0) && (n == 5) == (s.pooled_dim > 0),
                 "the shape's conditioning does not match the UNet's ", n, " inputs");
  const std::vector<int64_t> dims[5] = {{s.batch, s.channels, s.height, s.width},
                                        {1},
                                        {s.batch, s.text_len, s.text_dim},
                                        {s.batch, s.pooled_dim},
                                        {s.batch, s.time_ids_dim}};
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(names[i], dims[i]);
  return out;
}

std::string reshape_input_option(const std::vector<std::string>& names, const UnetShape& s) {
  std::ostringstream out;
  bool first = true;
  for (const auto& [name, dims] : unet_input_dims(names, s)) {
    out << (first ? "" : ",") << name << "[";
    for (size_t k = 0; k < dims.size(); ++k) out << (k ? "," : "") << dims[k];
    out << "]";
    first = false;
  }
  return out.str();
}

}  // namespace w2sd
