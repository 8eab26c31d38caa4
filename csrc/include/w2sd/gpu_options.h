// What a GPU session is given: the session settings and the CUDA / TensorRT execution
// provider options, per model. Host code (ONNX Runtime's C API only, no CUDA headers),
// so the CPU tests check the exact strings and the provider probe runs without a GPU.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "w2sd/ort_api.h"
#include "w2sd/ort_models.h"

namespace w2sd {

// Model kinds with their own provider options (a TensorRT profile names one model's inputs).
constexpr const char* kUnetModel = "unet";
constexpr const char* kTextEncoderModel = "text_encoder";
constexpr const char* kVaeDecoderModel = "vae_decoder";

// `base` with `over` applied: a key in both takes `over`'s value; first-seen order kept.
OptionList merge_options(const OptionList& base, const OptionList& over);

// GPU sessions run one op at a time on the device: ONNX Runtime's default intra-op pool
// (a spinning thread per core) would only burn host CPU.
constexpr int kGpuIntraOpThreads = 1;

// The CUDA EP's options: the device, cuDNN's convolution algorithm chosen by heuristics
// (EXHAUSTIVE, ONNX Runtime's default, benchmarks every algorithm on the first call of
// every shape in every session, i.e. per lane: seconds to minutes on a first request),
// then `user` (which wins).
OptionList cuda_provider_options(int device_id, const OptionList& user);

// The TensorRT EP's options for one model: the device, then the build's common options,
// then the model's own (profiles, precision).
OptionList tensorrt_provider_options(int device_id, const OptionList& common,
                                     const OptionList& model);

// Session options for one GPU model: threads, optimisation level, then the TensorRT EP
// (provider "tensorrt", with `trt`) and the CUDA EP (`cuda`), both on `stream` when it is
// not null. Throws kBackend with ONNX Runtime's reason when a provider cannot be appended
// (its library or one it needs, e.g. cuDNN or TensorRT, does not load).
Ort::SessionOptions gpu_session_options(const std::string& provider, const OptionList& cuda,
                                        const OptionList& trt, void* stream);

// Whether `provider` ("cuda" or "tensorrt") can be appended to a session here: "" if so,
// else why not. Loads the provider's library (and so cuDNN / cuBLAS / TensorRT).
std::string probe_gpu_provider(const std::string& provider, int device_id);

}  // namespace w2sd
