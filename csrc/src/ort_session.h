// Internal helpers shared by the ONNX Runtime backends (CPU and CUDA/TensorRT).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "w2sd/inference_backend.h"
#include "w2sd/ort_api.h"
#include "w2sd/ort_backend.h"
#include "w2sd/status.h"

namespace w2sd::ort_session {


// Converts ONNX Runtime's exceptions into the core's one error type.
template <typename Fn>
auto ort_call(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Ort::Exception& e) {
    detail::throw_error(ErrorCode::kBackend, what, ": ONNX Runtime error: ", e.what());
  }
}

inline Ort::Env& shared_env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "w2sd");
  return env;
}

// Not movable: `inputs`/`outputs` point into the strings it owns.
struct NamedSession {
  NamedSession(const NamedSession&) = delete;
  NamedSession& operator=(const NamedSession&) = delete;

  std::unique_ptr<Ort::Session> session;
  std::vector<std::string> input_names, output_names;
  std::vector<const char*> inputs, outputs;  // c_str views of the names above

  NamedSession(const std::string& path, const OrtModelNames& names,
               const Ort::SessionOptions& options, const char* what)
      : input_names(names.inputs), output_names(names.outputs) {
    if (!std::filesystem::is_regular_file(path)) {
      detail::throw_error(ErrorCode::kNotFound, what, ": model file '", path, "' does not exist");
    }
    session = ort_call(what, [&] {
      return std::make_unique<Ort::Session>(shared_env(), path.c_str(), options);
    });
    for (const auto& n : input_names) inputs.push_back(n.c_str());
    for (const auto& n : output_names) outputs.push_back(n.c_str());
    check_names(what);
  }

  void check_names(const char* what) const {
    Ort::AllocatorWithDefaultOptions alloc;
    const size_t n_in = session->GetInputCount();
    std::vector<std::string> model_inputs;
    for (size_t i = 0; i < n_in; ++i) {
      model_inputs.emplace_back(session->GetInputNameAllocated(i, alloc).get());
    }
    for (const auto& name : input_names) {
      bool found = false;
      for (const auto& m : model_inputs) found = found || m == name;
      if (!found) {
        detail::throw_error(ErrorCode::kInvalidArgument, what, ": model has no input '", name,
                            "'");
      }
    }
  }
};


inline HostTensor to_host(Ort::Value& value) {
  HostTensor t;
  auto info = value.GetTensorTypeAndShapeInfo();
  t.shape = info.GetShape();
  const float* data = value.GetTensorData<float>();
  t.data.assign(data, data + info.GetElementCount());
  return t;
}

}  // namespace w2sd::ort_session
