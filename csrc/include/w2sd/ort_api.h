// ONNX Runtime's C++ API, always with manual initialisation (see ort_library.h).
#pragma once

#ifndef ORT_API_MANUAL_INIT
#define ORT_API_MANUAL_INIT
#endif
#include <onnxruntime_cxx_api.h>
