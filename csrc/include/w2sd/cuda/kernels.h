// CUDA launchers for the per-step elementwise work. No CUDA headers here:
// launchers take raw device pointers and an opaque stream (cudaStream_t) and
// return the CUDA error code (0 = success); check_cuda() turns one into a
// W2sdError. The per-element math is ddim_math.h, shared with the host path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "w2sd/ddim_math.h"

namespace w2sd::cuda {

enum class DType : int { kFloat32 = 0, kFloat16 = 1 };

// out[k] = update(e, x[k]) with e = e_u + g (e_c - e_u) when `guided`
// (unet_out holds [e_u (n); e_c (n)]) or e = unet_out[k] otherwise.
// unet_out is in `unet_dtype`; x and out are float32 latents (out may alias x).
int launch_guided_ddim_update(const void* unet_out, DType unet_dtype, bool guided, float guidance,
                              const float* x, float* out, int64_t n, const DdimCoeffs& c,
                              PredictionType prediction, void* stream);

// dst = [x; x] (guided) or x, converted to `dst_dtype`: the UNet's sample input.
int launch_pack_sample(const float* x, void* dst, DType dst_dtype, bool twice, int64_t n,
                       void* stream);

// Converts n float32 values to dtype (a plain copy for float32).
int launch_convert(const float* src, void* dst, DType dtype, int64_t n, void* stream);

// The launchers above run once on host data, on `device`'s default stream (for tests:
// the device result must equal the host's ddim_math.h bit for bit). unet_out holds float32
// values, converted to unet_dtype on the device first (as a UNet's fp16 output would be).
std::vector<float> guided_ddim_update_on_device(int device, const std::vector<float>& unet_out,
                                                DType unet_dtype, bool guided, float guidance,
                                                const std::vector<float>& x, const DdimCoeffs& c,
                                                PredictionType prediction);
// launch_pack_sample's output, as raw bytes (float32 or float16 values).
std::vector<uint8_t> pack_sample_on_device(int device, const std::vector<float>& x, DType dtype,
                                           bool twice);

// Throws W2sdError(kBackend) naming `what` if code is not success.
void check_cuda(int code, const char* what);

// Number of CUDA devices visible (0 with no driver or no device; never throws).
int device_count();

// Why device_count() is 0 when the CUDA runtime reports an error ("" otherwise): the
// runtime's message with the driver's and this build's CUDA versions (a driver older
// than the toolkit the extension was built with is the usual cause).
std::string device_count_error();

// Makes `device` the calling thread's current CUDA device for the scope and restores
// the previous one after. The current device is per thread: every entry point that
// allocates, launches or creates streams/events on a backend's device opens one
// (lane threads and Python's calling threads start on device 0).
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace w2sd::cuda
