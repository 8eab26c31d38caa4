// The one error type of the C++ core. Every failure inside the core throws a
// W2sdError; the Python binding translates it into a Python exception in one
// place, so nothing native ever aborts the interpreter.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace w2sd {

enum class ErrorCode {
  kInvalidArgument,  // a caller passed something the contract forbids
  kNotFound,         // a file, library or symbol is missing
  kBackend,          // the inference backend (ONNX Runtime, CUDA) failed
  kCancelled,        // the progress callback asked to stop
  kInternal,         // a broken invariant inside the core
};

// The ErrorCode's name as Python's w2sd.errors.from_core knows it ("invalid_argument", ...).
const char* error_code_name(ErrorCode code) noexcept;

class W2sdError : public std::runtime_error {
 public:
  // `param`: the request field at fault ("latents", "reflection_steps", ...), "" if none.
  W2sdError(ErrorCode code, const std::string& message, std::string param = "")
      : std::runtime_error(message), code_(code), param_(std::move(param)) {}
  ErrorCode code() const noexcept { return code_; }
  const std::string& param() const noexcept { return param_; }

 private:
  ErrorCode code_;
  std::string param_;
};

namespace detail {
template <typename... Args>
[[noreturn]] void throw_error(ErrorCode code, const Args&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw W2sdError(code, os.str());
}

// A kInvalidArgument about request field `param`.
template <typename... Args>
[[noreturn]] void throw_param_error(const char* param, const Args&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw W2sdError(ErrorCode::kInvalidArgument, os.str(), param);
}
}  // namespace detail

}  // namespace w2sd

// Input checks: the message names the argument that is wrong.
#define W2SD_CHECK_ARG(cond, ...)                                                               \
  do {                                                                                          \
    if (!(cond)) ::w2sd::detail::throw_error(::w2sd::ErrorCode::kInvalidArgument, __VA_ARGS__); \
  } while (0)

// An input check about request field `param` (the exception carries it).
#define W2SD_CHECK_PARAM(cond, param, ...)                              \
  do {                                                                  \
    if (!(cond)) ::w2sd::detail::throw_param_error(param, __VA_ARGS__); \
  } while (0)

#define W2SD_CHECK_INTERNAL(cond, ...)                                                   \
  do {                                                                                   \
    if (!(cond)) ::w2sd::detail::throw_error(::w2sd::ErrorCode::kInternal, __VA_ARGS__); \
  } while (0)
