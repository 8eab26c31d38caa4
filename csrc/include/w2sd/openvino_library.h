// Loads OpenVINO's C library (libopenvino_c, from the `openvino` wheel) by path at run time,
// so the extension imports without OpenVINO, as ONNX Runtime's library is loaded.
#pragma once

#include <string>

namespace w2sd {

struct OpenVinoLibraryInfo {
  std::string path;
  std::string version;  // ov_get_openvino_version()'s build number
};

// Whether this build was compiled against OpenVINO's C header (W2SD_WITH_OPENVINO).
bool openvino_compiled();

// Loads the library once per process; the same path again is a no-op, another path an error.
// Throws W2sdError(kNotFound) if it or one of its functions is missing, kBackend if this build
// has no OpenVINO support.
const OpenVinoLibraryInfo& load_openvino_library(const std::string& path);

// Whether load_openvino_library has succeeded.
bool openvino_library_loaded();

}  // namespace w2sd
