// The one error route: every C++ exception becomes w2sd.errors.from_core(code, message,
// param), for raised errors (the translator) and run_many's per-request ones alike.
#include "binding.h"
#include "w2sd/status.h"

namespace w2sd::python {
namespace {

py::object from_core(const char* code, const char* message, const std::string& param) {
  py::object param_or_none = param.empty() ? py::object(py::none()) : py::str(param);
  return py::module_::import("w2sd.errors").attr("from_core")(code, message, param_or_none);
}

}  // namespace

py::object python_error(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (py::error_already_set& e) {
    return e.value();  // raised by a progress callback: comes back as itself
  } catch (const W2sdError& e) {
    return from_core(error_code_name(e.code()), e.what(), e.param());
  } catch (const std::exception& e) {
    return from_core(error_code_name(ErrorCode::kInternal), e.what(), "");
  } catch (...) {
    return from_core(error_code_name(ErrorCode::kInternal), "unknown C++ exception", "");
  }
}

void register_error_translator() {
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (py::error_already_set& e) {
      e.restore();
    } catch (const py::builtin_exception& e) {
      e.set_error();  // the binding's own conversions (TypeError, ValueError)
    } catch (...) {
      py::object error = python_error(std::current_exception());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    }
  });
}

}  // namespace w2sd::python
