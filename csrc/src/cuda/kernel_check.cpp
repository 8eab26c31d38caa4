#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "w2sd/cuda/kernels.h"
#include "w2sd/status.h"

namespace w2sd::cuda {
namespace {

// A device buffer freed on scope exit (these checks run outside any lane).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) {
    check_cuda(static_cast<int>(cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes)), "cudaMalloc");
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(other.ptr_) { other.ptr_ = nullptr; }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

size_t element_bytes(DType dtype) { return dtype == DType::kFloat16 ? 2 : 4; }

DeviceBuffer upload(const std::vector<float>& values) {
  DeviceBuffer buffer(values.size() * sizeof(float));
  check_cuda(static_cast<int>(cudaMemcpy(buffer.get(), values.data(), values.size() * sizeof(float),
                                         cudaMemcpyHostToDevice)),
             "cudaMemcpy (upload)");
  return buffer;
}

std::vector<uint8_t> download(const void* src, size_t bytes) {
  std::vector<uint8_t> out(bytes);
  check_cuda(static_cast<int>(cudaDeviceSynchronize()), "kernel");
  check_cuda(static_cast<int>(cudaMemcpy(out.data(), src, bytes, cudaMemcpyDeviceToHost)),
             "cudaMemcpy (download)");
  return out;
}

}  // namespace

std::vector<float> guided_ddim_update_on_device(int device, const std::vector<float>& unet_out,
                                                DType unet_dtype, bool guided, float guidance,
                                                const std::vector<float>& x, const DdimCoeffs& c,
                                                PredictionType prediction) {
  W2SD_CHECK_ARG(unet_out.size() == (guided ? 2 : 1) * x.size(), "unet_out must hold ",
                 guided ? "2 x" : "1 x", " the latent's elements");
  DeviceScope scope(device);
  const auto n = static_cast<int64_t>(x.size());
  DeviceBuffer e32 = upload(unet_out);
  DeviceBuffer e(unet_out.size() * element_bytes(unet_dtype));
  check_cuda(launch_convert(static_cast<const float*>(e32.get()), e.get(), unet_dtype,
                            static_cast<int64_t>(unet_out.size()), nullptr),
             "launch_convert");
  DeviceBuffer xs = upload(x);
  DeviceBuffer out(x.size() * sizeof(float));
  check_cuda(launch_guided_ddim_update(e.get(), unet_dtype, guided, guidance,
                                       static_cast<const float*>(xs.get()),
                                       static_cast<float*>(out.get()), n, c, prediction, nullptr),
             "launch_guided_ddim_update");
  const std::vector<uint8_t> bytes = download(out.get(), x.size() * sizeof(float));
  std::vector<float> result(x.size());
  std::memcpy(result.data(), bytes.data(), bytes.size());
  return result;
}

std::vector<uint8_t> pack_sample_on_device(int device, const std::vector<float>& x, DType dtype,
                                           bool twice) {
  DeviceScope scope(device);
  DeviceBuffer xs = upload(x);
  const size_t count = x.size() * (twice ? 2 : 1);
  DeviceBuffer dst(count * element_bytes(dtype));
  check_cuda(launch_pack_sample(static_cast<const float*>(xs.get()), dst.get(), dtype, twice,
                                static_cast<int64_t>(x.size()), nullptr),
             "launch_pack_sample");
  return download(dst.get(), count * element_bytes(dtype));
}

}  // namespace w2sd::cuda
