#include "w2sd/ort_library.h"

#include <dlfcn.h>

#include <mutex>

#include "w2sd/ort_api.h"
#include "w2sd/status.h"

namespace w2sd {
namespace {
std::mutex g_mutex;
OrtLibraryInfo g_info;
bool g_loaded = false;
}  // namespace

const OrtLibraryInfo& load_ort_library(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_loaded) {
    W2SD_CHECK_ARG(path == g_info.path, "ONNX Runtime is already loaded from '", g_info.path,
                   "'; cannot load a second copy from '", path, "'");
    return g_info;
  }
  // RTLD_LOCAL keeps its symbols private: the Python wheel's copy of ONNX
  // Runtime may live in the same process.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    detail::throw_error(ErrorCode::kNotFound, "cannot load ONNX Runtime from '", path,
                        "': ", why ? why : "unknown dlopen error");
  }
  using GetApiBaseFn = const OrtApiBase* (*)();
  auto get_api_base = reinterpret_cast<GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  if (get_api_base == nullptr) {
    dlclose(handle);
    detail::throw_error(ErrorCode::kNotFound, "'", path, "' has no OrtGetApiBase symbol");
  }
  const OrtApiBase* base = get_api_base();
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    const std::string version = base->GetVersionString();
    dlclose(handle);
    detail::throw_error(ErrorCode::kNotFound, "ONNX Runtime ", version, " at '", path,
                        "' does not provide C API version ", ORT_API_VERSION,
                        " (needs ONNX Runtime >= 1.", ORT_API_VERSION, ")");
  }
  Ort::InitApi(api);
  g_info = OrtLibraryInfo{path, base->GetVersionString(), ORT_API_VERSION};
  g_loaded = true;  // the handle stays open for the life of the process
  return g_info;
}

const OrtLibraryInfo& ort_library() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_loaded) {
    detail::throw_error(ErrorCode::kInternal, "ONNX Runtime library has not been loaded");
  }
  return g_info;
}

}  // namespace w2sd
