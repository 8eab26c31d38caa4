// What this build knows about CUDA, asked the same way with or without CUDA compiled in
// (no CUDA headers; a build without CUDA answers "none" and its device checks throw kBackend).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "w2sd/ddim_math.h"

namespace w2sd {

// Whether this build has the CUDA kernels and the CUDA/TensorRT backend.
bool cuda_compiled();

// CUDA devices visible to this build (0 without CUDA support, driver or device).
int cuda_device_count();

// Why cuda_device_count() is 0 ("" when that is not an error of the CUDA runtime).
std::string cuda_device_count_error();

// The device loop's update kernel once on `device`, on host data: unet_out is
// [e_u; e_c] (guided) or e, given to the kernel as `unet_dtype` ("float32" or "float16").
std::vector<float> cuda_guided_ddim_update(int device, const std::vector<float>& unet_out,
                                           const std::string& unet_dtype, bool guided,
                                           float guidance, const std::vector<float>& x,
                                           const DdimCoeffs& c, PredictionType prediction);

// The UNet sample input the device loop packs from x ([x; x] when twice), as raw bytes.
std::vector<uint8_t> cuda_pack_sample(int device, const std::vector<float>& x,
                                      const std::string& dtype, bool twice);

}  // namespace w2sd
