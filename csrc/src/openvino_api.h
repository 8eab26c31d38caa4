// OpenVINO's C API as function pointers resolved from the library load_openvino_library
// opened (dlsym): the core never links libopenvino_c. Internal to the OpenVINO backend.
#pragma once

#include <openvino/c/openvino.h>

#include <string>

namespace w2sd::ov {

// Every C function the backend calls; OV_API_FUNCTIONS(X) applies X to each name.
#define W2SD_OV_API_FUNCTIONS(X)            \
  X(ov_get_openvino_version)                \
  X(ov_version_free)                        \
  X(ov_get_last_err_msg)                    \
  X(ov_get_error_info)                      \
  X(ov_core_create)                         \
  X(ov_core_free)                           \
  X(ov_core_set_properties)                 \
  X(ov_core_get_versions_by_device_name)    \
  X(ov_core_versions_free)                  \
  X(ov_core_read_model)                     \
  X(ov_core_compile_model_props)            \
  X(ov_model_free)                          \
  X(ov_model_const_input_by_name)           \
  X(ov_model_const_output_by_name)          \
  X(ov_output_const_port_free)              \
  X(ov_model_reshape)                       \
  X(ov_partial_shape_create_static)         \
  X(ov_partial_shape_free)                  \
  X(ov_compiled_model_create_infer_request) \
  X(ov_compiled_model_free)                 \
  X(ov_infer_request_set_tensor)            \
  X(ov_infer_request_get_tensor)            \
  X(ov_infer_request_infer)                 \
  X(ov_infer_request_free)                  \
  X(ov_shape_create)                        \
  X(ov_shape_free)                          \
  X(ov_tensor_create_from_host_ptr)         \
  X(ov_tensor_get_shape)                    \
  X(ov_tensor_get_size)                     \
  X(ov_tensor_data)                         \
  X(ov_tensor_free)

struct Api {
#define W2SD_OV_POINTER(name) decltype(&::name) name = nullptr;
  W2SD_OV_API_FUNCTIONS(W2SD_OV_POINTER)
#undef W2SD_OV_POINTER
};

// The loaded library's functions; throws W2sdError(kInternal) if none is loaded.
const Api& api();

// Throws W2sdError(kBackend) naming `what` and OpenVINO's message unless `status` is OK.
void check(ov_status_e status, const char* what);

}  // namespace w2sd::ov
