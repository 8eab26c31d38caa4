#include "w2sd/openvino_library.h"

#include <dlfcn.h>

#include <mutex>

#include "w2sd/status.h"
#ifdef W2SD_WITH_OPENVINO
#include "openvino_api.h"
#endif

namespace w2sd {
namespace {
std::mutex g_mutex;
OpenVinoLibraryInfo g_info;
bool g_loaded = false;
#ifdef W2SD_WITH_OPENVINO
ov::Api g_api;
#endif
}  // namespace

bool openvino_compiled() {
#ifdef W2SD_WITH_OPENVINO
  return true;
#else
  return false;
#endif
}

bool openvino_library_loaded() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_loaded;
}

#ifndef W2SD_WITH_OPENVINO
const OpenVinoLibraryInfo& load_openvino_library(const std::string&) {
  detail::throw_error(ErrorCode::kBackend,
                      "this build of w2sd has no OpenVINO support (OpenVINO's C header was not "
                      "found when it was built: pip install w2sd-runtime[openvino], then rebuild)");
}
#else
const OpenVinoLibraryInfo& load_openvino_library(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_loaded) {
    W2SD_CHECK_ARG(path == g_info.path, "OpenVINO is already loaded from '", g_info.path,
                   "'; cannot load a second copy from '", path, "'");
    return g_info;
  }
  // RTLD_LOCAL: the symbols stay private; the Python openvino module may share the process
  // (it loads the same libopenvino.so from the same wheel).
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    detail::throw_error(ErrorCode::kNotFound, "cannot load OpenVINO from '", path,
                        "': ", why ? why : "unknown dlopen error");
  }
  ov::Api api;
#define W2SD_OV_RESOLVE(name)                                                \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(handle, #name));     \
  if (api.name == nullptr) {                                                 \
    dlclose(handle);                                                         \
    detail::throw_error(ErrorCode::kNotFound, "'", path, "' has no ", #name, \
                        " (OpenVINO's C API of 2026.4 or later is needed)"); \
  }
  W2SD_OV_API_FUNCTIONS(W2SD_OV_RESOLVE)
#undef W2SD_OV_RESOLVE
  ov_version_t version{};
  std::string build = "unknown";
  if (api.ov_get_openvino_version(&version) == OK) {
    build = version.buildNumber ? version.buildNumber : "unknown";
    api.ov_version_free(&version);
  }
  g_api = api;
  g_info = OpenVinoLibraryInfo{path, build};
  g_loaded = true;  // the handle stays open for the life of the process
  return g_info;
}

namespace ov {

const Api& api() {
  std::lock_guard<std::mutex> lock(g_mutex);
  W2SD_CHECK_INTERNAL(g_loaded, "OpenVINO's library has not been loaded");
  return g_api;
}

void check(ov_status_e status, const char* what) {
  if (status == OK) return;
  const Api& a = api();
  const char* last = a.ov_get_last_err_msg();
  detail::throw_error(ErrorCode::kBackend, what, ": OpenVINO error: ", a.ov_get_error_info(status),
                      last && *last ? std::string(": ") + last : std::string());
}

}  // namespace ov
#endif

}  // namespace w2sd
