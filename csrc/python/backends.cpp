// ONNX Runtime's and OpenVINO's libraries, which backends can run here, and what this build knows
// of CUDA.
#include <pybind11/stl.h>

#include "binding.h"
#include "w2sd/backend_factory.h"
#include "w2sd/cuda_support.h"
#include "w2sd/openvino_library.h"
#include "w2sd/ort_library.h"

namespace w2sd::python {

void bind_backends(py::module_& m) {
  m.def(
      "load_ort_library",
      [](const std::string& path) {
        const OrtLibraryInfo& info = load_ort_library(path);
        return py::make_tuple(info.path, info.version, info.api_version);
      },
      py::arg("path"), "Load ONNX Runtime's shared library; returns (path, version, api_version).");
  m.def(
      "load_openvino_library",
      [](const std::string& path) {
        const OpenVinoLibraryInfo& info = load_openvino_library(path);
        return py::make_tuple(info.path, info.version);
      },
      py::arg("path"), "Load OpenVINO's C library (libopenvino_c); returns (path, version).");
  m.def(
      "backend_availability",
      [](const std::string& backend) {
        const BackendAvailability a = backend_availability(backend);
        return py::make_tuple(a.available, a.reason);
      },
      py::arg("backend"),
      "(available, reason) for backend 'cpu', 'openvino', 'cuda' or 'tensorrt' "
      "(load_ort_library first; load_openvino_library for 'openvino').");
  m.def("cuda_compiled", &cuda_compiled,
        "Whether this build has the CUDA kernels and the CUDA/TensorRT backend.");
  m.def("cuda_device_count", &cuda_device_count,
        "CUDA devices visible to this build (0 without CUDA support, driver or device).");
}

}  // namespace w2sd::python
