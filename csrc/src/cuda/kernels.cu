#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "w2sd/cuda/kernels.h"
#include "w2sd/status.h"

namespace w2sd::cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 ? b : 65535);
}

__device__ inline float load(const float* p, int64_t i) { return p[i]; }
__device__ inline float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ inline void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ inline void store(__half* p, int64_t i, float v) { p[i] = __float2half(v); }

template <typename T>
__global__ void guided_ddim_update_kernel(const T* unet_out, bool guided, float guidance,
                                          const float* x, float* out, int64_t n, DdimCoeffs c,
                                          PredictionType prediction) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const float xk = x[k];
    out[k] = guided ? guided_ddim_update(load(unet_out, k), load(unet_out, n + k), guidance, xk, c,
                                         prediction)
                    : ddim_update(load(unet_out, k), xk, c, prediction);
  }
}

template <typename T>
__global__ void pack_sample_kernel(const float* x, T* dst, bool twice, int64_t n) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[k];
    store(dst, k, v);
    if (twice) store(dst, n + k, v);
  }
}

}  // namespace

int launch_guided_ddim_update(const void* unet_out, DType unet_dtype, bool guided, float guidance,
                              const float* x, float* out, int64_t n, const DdimCoeffs& c,
                              PredictionType prediction, void* stream) {
  if (n <= 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (unet_dtype == DType::kFloat16) {
    guided_ddim_update_kernel<<<blocks_for(n), kThreads, 0, s>>>(
        static_cast<const __half*>(unet_out), guided, guidance, x, out, n, c, prediction);
  } else {
    guided_ddim_update_kernel<<<blocks_for(n), kThreads, 0, s>>>(
        static_cast<const float*>(unet_out), guided, guidance, x, out, n, c, prediction);
  }
  return static_cast<int>(cudaGetLastError());
}

int launch_pack_sample(const float* x, void* dst, DType dst_dtype, bool twice, int64_t n,
                       void* stream) {
  if (n <= 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dst_dtype == DType::kFloat16) {
    pack_sample_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, static_cast<__half*>(dst), twice, n);
  } else {
    pack_sample_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, static_cast<float*>(dst), twice, n);
  }
  return static_cast<int>(cudaGetLastError());
}

int launch_convert(const float* src, void* dst, DType dtype, int64_t n, void* stream) {
  return launch_pack_sample(src, dst, dtype, false, n, stream);
}

void check_cuda(int code, const char* what) {
  if (code != 0) {
    detail::throw_error(ErrorCode::kBackend, what, ": CUDA error ", code, " (",
                        cudaGetErrorString(static_cast<cudaError_t>(code)), ")");
  }
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_count_error() {
  int n = 0;
  const cudaError_t code = cudaGetDeviceCount(&n);
  if (code == cudaSuccess) return "";
  cudaGetLastError();
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  if (driver == 0) {
    return std::string("no NVIDIA driver is loaded; cudaGetDeviceCount: ") +
           cudaGetErrorString(code);
  }
  auto version = [](int v) {
    return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
  };
  std::string why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(code) +
                    " (the driver supports CUDA " + version(driver) +
                    ", this build's CUDA runtime is " + version(runtime) + ")";
  if (code == cudaErrorInsufficientDriver) {
    why += ": update the driver, or rebuild the extension with a CUDA toolkit it supports";
  }
  return why;
}

DeviceScope::DeviceScope(int device) {
  int current = 0;
  check_cuda(static_cast<int>(cudaGetDevice(&current)), "cudaGetDevice");
  if (current != device) {
    check_cuda(static_cast<int>(cudaSetDevice(device)), "cudaSetDevice");
    previous_ = current;
  }
}

DeviceScope::~DeviceScope() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

}  // namespace w2sd::cuda
