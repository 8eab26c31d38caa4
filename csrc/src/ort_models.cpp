#include "w2sd/ort_models.h"

#include "w2sd/status.h"

namespace w2sd {

void check_models(const OrtBackendConfig& config) {
  W2SD_CHECK_ARG(!config.unet_paths.empty(), "unet_paths must name at least one UNet model");
  const size_t n = config.unet_names.inputs.size();
  W2SD_CHECK_ARG(n == 2 || n == 3 || n == 5,
                 "UNet inputs must be 2 (unconditional), 3 (SD) or 5 (SDXL) names, got ", n);
  W2SD_CHECK_ARG(config.text_encoder_paths.size() == config.text_encoder_names.size(),
                 "need one name set per text encoder path");
  W2SD_CHECK_ARG((n == 2) == config.text_encoder_paths.empty(),
                 n == 2 ? "an unconditional denoiser takes no text encoder"
                        : "a conditional UNet needs a text encoder");
}

}  // namespace w2sd
