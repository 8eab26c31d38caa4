#include "w2sd/backend_factory.h"

#include <algorithm>

#include "w2sd/cuda_support.h"
#include "w2sd/gpu_options.h"
#include "w2sd/openvino_backend.h"
#include "w2sd/openvino_library.h"
#include "w2sd/ort_api.h"
#include "w2sd/ort_cpu_backend.h"
#include "w2sd/ort_library.h"
#include "w2sd/status.h"
#ifdef W2SD_WITH_CUDA
#include "w2sd/cuda/device_loop.h"
#include "w2sd/ort_cuda_backend.h"
#endif

namespace w2sd {
namespace {

const char* ort_provider_name(const std::string& provider) {
  if (provider == "cpu") return "CPUExecutionProvider";
  if (provider == "cuda") return "CUDAExecutionProvider";
  if (provider == "tensorrt") return "TensorrtExecutionProvider";
  detail::throw_error(ErrorCode::kInvalidArgument, "backend: unknown backend '", provider,
                      "' (known: cpu, openvino, cuda, tensorrt)");
}

// OpenVINO's own runtime: compiled in, its library loaded, its CPU plugin loads here.
BackendAvailability openvino_availability() {
  BackendAvailability result;
  if (!openvino_compiled()) {
    result.reason =
        "this build of w2sd has no OpenVINO support (OpenVINO's C header was not found when it "
        "was built: pip install w2sd-runtime[openvino], then rebuild)";
    return result;
  }
#ifdef W2SD_WITH_OPENVINO
  result.reason = probe_openvino();
#endif
  result.available = result.reason.empty();
  return result;
}

}  // namespace

BackendAvailability backend_availability(const std::string& provider) {
  if (provider == "openvino") return openvino_availability();
  const char* ort_name = ort_provider_name(provider);
  BackendAvailability result;
  const bool host = provider == "cpu";
  if (!host && !cuda_compiled()) {
    result.reason = "this build of w2sd has no CUDA support (rebuild with W2SD_CUDA=1)";
    return result;
  }
  if (!host && cuda_device_count() == 0) {
    const std::string why = cuda_device_count_error();
    result.reason = "no CUDA device is visible (" + (why.empty() ? "no GPU" : why) + ")";
    return result;
  }
  const OrtLibraryInfo& lib = ort_library();
  const std::vector<std::string> providers = Ort::GetAvailableProviders();
  if (std::find(providers.begin(), providers.end(), ort_name) == providers.end()) {
    result.reason = std::string("the ONNX Runtime library ") + lib.path + " (" + lib.version +
                    ") has no " + ort_name + " (install w2sd-runtime[gpu])";
    return result;
  }
  if (!host) {
    // Listed is what the library was built with, not what loads here: appending the EP
    // loads its provider library, and with it cuDNN / cuBLAS / TensorRT.
    const std::string why = probe_gpu_provider(provider, 0);
    if (!why.empty()) {
      result.reason = why +
                      " (the NVIDIA libraries come with `pip install w2sd-runtime[gpu]`; "
                      "see scripts/gpu_check.sh)";
      return result;
    }
  }
  result.available = true;
  return result;
}

std::unique_ptr<Engine> make_engine(const EngineConfig& config) {
  const BackendAvailability availability = backend_availability(config.provider);
  if (!availability.available) {
    detail::throw_error(ErrorCode::kBackend, "backend '", config.provider,
                        "' is not available: ", availability.reason);
  }
  if (config.provider == "cpu") {
    return std::make_unique<Engine>(std::make_unique<OrtCpuBackend>(config.models),
                                    make_host_executor(), config.scheduler);
  }
  if (config.provider == "openvino") {
#ifdef W2SD_WITH_OPENVINO
    OpenVinoBackendConfig ov{config.models, config.provider_options, config.unet_shape_sessions,
                             config.warm_unet_shapes};
    return std::make_unique<Engine>(std::make_unique<OpenVinoBackend>(ov), make_host_executor(),
                                    config.scheduler);
#endif
  }
  W2SD_CHECK_PARAM(config.unet_shape_sessions == 0, "unet_shape_sessions",
                   "unet_shape_sessions: static-shape UNet sessions are for backend 'openvino'");
#ifdef W2SD_WITH_CUDA
  OrtCudaBackendConfig cc;
  cc.base = config.models;
  cc.provider = config.provider;
  cc.device_id = config.device_id;
  cc.lanes = config.lanes;
  cc.provider_options = config.provider_options;
  cc.model_provider_options = config.model_provider_options;
  return std::make_unique<Engine>(std::make_unique<OrtCudaBackend>(cc),
                                  cuda::make_device_executor(), config.scheduler);
#else
  detail::throw_error(ErrorCode::kInternal, "unreachable: ", config.provider, " is not built");
#endif
}

}  // namespace w2sd
