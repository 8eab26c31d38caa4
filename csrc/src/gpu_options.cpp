#include "w2sd/gpu_options.h"

#include <algorithm>

#include "ort_session.h"
#include "w2sd/status.h"

namespace w2sd {
namespace {

void throw_backend(const char* what, const Ort::Status& st) {
  detail::throw_error(ErrorCode::kBackend, what, " execution provider: ", st.GetErrorMessage());
}

std::vector<const char*> keys_of(const OptionList& options) {
  std::vector<const char*> keys;
  for (const auto& kv : options) keys.push_back(kv.first.c_str());
  return keys;
}

std::vector<const char*> values_of(const OptionList& options) {
  std::vector<const char*> values;
  for (const auto& kv : options) values.push_back(kv.second.c_str());
  return values;
}

void append_tensorrt(Ort::SessionOptions& options, const OptionList& trt, void* stream) {
  const OrtApi& api = Ort::GetApi();
  OrtTensorRTProviderOptionsV2* p = nullptr;
  Ort::Status st(api.CreateTensorRTProviderOptions(&p));
  if (st.IsOK()) {
    const auto keys = keys_of(trt);
    const auto values = values_of(trt);
    st = Ort::Status(api.UpdateTensorRTProviderOptions(p, keys.data(), values.data(), keys.size()));
  }
  if (st.IsOK() && stream != nullptr) {
    st = Ort::Status(api.UpdateTensorRTProviderOptionsWithValue(p, "user_compute_stream", stream));
  }
  if (st.IsOK()) {
    st = Ort::Status(api.SessionOptionsAppendExecutionProvider_TensorRT_V2(options, p));
  }
  if (p != nullptr) api.ReleaseTensorRTProviderOptions(p);
  if (!st.IsOK()) throw_backend("TensorRT", st);
}

void append_cuda(Ort::SessionOptions& options, const OptionList& cuda, void* stream) {
  const OrtApi& api = Ort::GetApi();
  OrtCUDAProviderOptionsV2* p = nullptr;
  Ort::Status st(api.CreateCUDAProviderOptions(&p));
  if (st.IsOK()) {
    const auto keys = keys_of(cuda);
    const auto values = values_of(cuda);
    st = Ort::Status(api.UpdateCUDAProviderOptions(p, keys.data(), values.data(), keys.size()));
  }
  if (st.IsOK() && stream != nullptr) {
    st = Ort::Status(api.UpdateCUDAProviderOptionsWithValue(p, "user_compute_stream", stream));
  }
  if (st.IsOK()) st = Ort::Status(api.SessionOptionsAppendExecutionProvider_CUDA_V2(options, p));
  if (p != nullptr) api.ReleaseCUDAProviderOptions(p);
  if (!st.IsOK()) throw_backend("CUDA", st);
}

}  // namespace

OptionList merge_options(const OptionList& base, const OptionList& over) {
  OptionList out = base;
  for (const auto& kv : over) {
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const auto& existing) { return existing.first == kv.first; });
    if (it == out.end()) {
      out.push_back(kv);
    } else {
      it->second = kv.second;
    }
  }
  return out;
}

namespace {

// The runtime's own keys: the device (its streams and buffers live there) and the stream
// (set by pointer), never taken from a build's or caller's options.
OptionList without_runtime_keys(const OptionList& options) {
  OptionList out;
  for (const auto& kv : options) {
    if (kv.first != "device_id" && kv.first != "user_compute_stream" &&
        kv.first != "has_user_compute_stream") {
      out.push_back(kv);
    }
  }
  return out;
}

}  // namespace

OptionList cuda_provider_options(int device_id, const OptionList& user) {
  return merge_options(
      {{"device_id", std::to_string(device_id)}, {"cudnn_conv_algo_search", "HEURISTIC"}},
      without_runtime_keys(user));
}

OptionList tensorrt_provider_options(int device_id, const OptionList& common,
                                     const OptionList& model) {
  return merge_options(
      merge_options({{"device_id", std::to_string(device_id)}}, without_runtime_keys(common)),
      without_runtime_keys(model));
}

Ort::SessionOptions gpu_session_options(const std::string& provider, const OptionList& cuda,
                                        const OptionList& trt, void* stream) {
  W2SD_CHECK_ARG(provider == "cuda" || provider == "tensorrt",
                 "provider must be 'cuda' or 'tensorrt', got '", provider, "'");
  ort_session::shared_env();  // execution providers log through the environment
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(kGpuIntraOpThreads);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  // TensorRT first: nodes it does not take fall to the CUDA EP.
  if (provider == "tensorrt") append_tensorrt(options, trt, stream);
  append_cuda(options, cuda, stream);
  return options;
}

std::string probe_gpu_provider(const std::string& provider, int device_id) {
  try {
    // Some onnxruntime-gpu builds ship the CUDA EP as a plugin library (registered through
    // RegisterExecutionProviderLibrary, appended by OrtEpDevice), which the classic
    // append below cannot load; say so rather than "Failed to load shared library".
    const std::string info = Ort::GetBuildInfoString();
    if (info.find("cuda-plugin-ep=1") != std::string::npos ||
        info.find("cuda-plugin-ep=ON") != std::string::npos) {
      return "this ONNX Runtime build ships the CUDA execution provider as a plugin "
             "(build info: " +
             info +
             "), which the core does not drive yet; install an onnxruntime-gpu build "
             "without cuda-plugin-ep";
    }
    const OptionList device{{"device_id", std::to_string(device_id)}};
    gpu_session_options(provider, device, device, nullptr);
  } catch (const W2sdError& e) {
    return e.what();
  } catch (const Ort::Exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace w2sd
