// Loads ONNX Runtime's shared library by path at run time (dlopen +
// OrtGetApiBase), so one build works with the `onnxruntime` or
// `onnxruntime-gpu` wheel's library. Headers are compiled with
// ORT_API_MANUAL_INIT; this is the only place that initialises the C++ API.
#pragma once

#include <string>

namespace w2sd {

struct OrtLibraryInfo {
  std::string path;
  std::string version;  // OrtGetApiBase()->GetVersionString()
  int api_version = 0;  // the C API version the headers asked for
};

// Loads the library once per process; later calls with the same path are
// no-ops, a different path is an error. Throws W2sdError(kNotFound) if the
// library or its API version is unavailable.
const OrtLibraryInfo& load_ort_library(const std::string& path);

// The loaded library, or throws if load_ort_library has not succeeded.
const OrtLibraryInfo& ort_library();

}  // namespace w2sd
