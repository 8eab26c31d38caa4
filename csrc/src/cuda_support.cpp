#include "w2sd/cuda_support.h"

#include "w2sd/status.h"
#ifdef W2SD_WITH_CUDA
#include "w2sd/cuda/kernels.h"
#endif

namespace w2sd {
namespace {

bool float16(const std::string& dtype, const char* name) {
  W2SD_CHECK_ARG(dtype == "float32" || dtype == "float16", name, ": 'float32' or 'float16'");
  return dtype == "float16";
}

}  // namespace

#ifdef W2SD_WITH_CUDA

bool cuda_compiled() { return true; }
int cuda_device_count() { return cuda::device_count(); }
std::string cuda_device_count_error() { return cuda::device_count_error(); }

std::vector<float> cuda_guided_ddim_update(int device, const std::vector<float>& unet_out,
                                           const std::string& unet_dtype, bool guided,
                                           float guidance, const std::vector<float>& x,
                                           const DdimCoeffs& c, PredictionType prediction) {
  const auto dtype =
      float16(unet_dtype, "unet_dtype") ? cuda::DType::kFloat16 : cuda::DType::kFloat32;
  return cuda::guided_ddim_update_on_device(device, unet_out, dtype, guided, guidance, x, c,
                                            prediction);
}

std::vector<uint8_t> cuda_pack_sample(int device, const std::vector<float>& x,
                                      const std::string& dtype, bool twice) {
  const auto d = float16(dtype, "dtype") ? cuda::DType::kFloat16 : cuda::DType::kFloat32;
  return cuda::pack_sample_on_device(device, x, d, twice);
}

#else

bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_device_count_error() { return ""; }

std::vector<float> cuda_guided_ddim_update(int, const std::vector<float>&,
                                           const std::string& unet_dtype, bool, float,
                                           const std::vector<float>&, const DdimCoeffs&,
                                           PredictionType) {
  float16(unet_dtype, "unet_dtype");
  detail::throw_error(ErrorCode::kBackend, "this build has no CUDA");
}

std::vector<uint8_t> cuda_pack_sample(int, const std::vector<float>&, const std::string& dtype,
                                      bool) {
  float16(dtype, "dtype");
  detail::throw_error(ErrorCode::kBackend, "this build has no CUDA");
}

#endif

}  // namespace w2sd
