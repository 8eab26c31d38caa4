// The compiled module w2sd._core, and its submodule w2sd._core.testing (test-only entry
// points, re-exported by w2sd.testing; production code never imports it).
#include "binding.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "w2sd C++ core: DDIM math, the W2SD reflection loop, ONNX Runtime backends";
  w2sd::python::register_error_translator();
  w2sd::python::bind_schedule(m);
  w2sd::python::bind_backends(m);
  w2sd::python::bind_engine(m);
  auto testing = m.def_submodule("testing", "Test-only entry points of the core (w2sd.testing).");
  w2sd::python::bind_testing(testing);
}
