#include "w2sd/ort_cuda_backend.h"

#include <cuda_runtime.h>

#include <array>

#include "../ort_session.h"
#include "w2sd/cuda/kernels.h"
#include "w2sd/cuda_graph_plan.h"
#include "w2sd/ort_library.h"
#include "w2sd/status.h"

namespace w2sd {
using namespace ort_session;

namespace {

// One model kind's session options on `stream`: the provider options common to every
// model, then the kind's own.
Ort::SessionOptions model_session_options(const OrtCudaBackendConfig& config, const char* kind,
                                          cudaStream_t stream) {
  const auto it = config.model_provider_options.find(kind);
  const OptionList own = it == config.model_provider_options.end() ? OptionList{} : it->second;
  if (config.provider == "tensorrt") {
    return gpu_session_options(
        "tensorrt", cuda_provider_options(config.device_id, {}),
        tensorrt_provider_options(config.device_id, config.provider_options, own), stream);
  }
  return gpu_session_options(
      "cuda", cuda_provider_options(config.device_id, merge_options(config.provider_options, own)),
      {}, stream);
}

// The UNet sessions' CUDA EP options, as model_session_options gives them.
OptionList unet_cuda_options(const OrtCudaBackendConfig& config) {
  const auto it = config.model_provider_options.find(kUnetModel);
  const OptionList own = it == config.model_provider_options.end() ? OptionList{} : it->second;
  return merge_options(config.provider_options, own);
}

// `options` without enable_cuda_graph: a UNet session that launches every kernel.
OptionList without_cuda_graph(const OptionList& options) {
  OptionList out;
  for (const auto& kv : options) {
    if (kv.first != "enable_cuda_graph") out.push_back(kv);
  }
  return out;
}

// One UNet session's CUDA graphs: which input shapes each captured graph serves, and the
// fixed device buffers (slots) it reads its inputs from and writes its output to.
struct GraphSlots {
  CudaGraphPlan plan{kMaxGraphsPerSession};
  std::vector<std::vector<void*>> inputs;  // [graph][input]
  std::vector<void*> outputs;              // [graph]

  GraphSlots() = default;
  GraphSlots(const GraphSlots&) = delete;
  GraphSlots& operator=(const GraphSlots&) = delete;
  ~GraphSlots() {
    for (auto& graph : inputs) {
      for (void* p : graph) cudaFree(p);
    }
    for (void* p : outputs) cudaFree(p);
  }

  // The slots of graph `id`, allocated on its first call from the tensors' sizes.
  void ensure(int id, const std::vector<TensorRef>& in, const TensorRef& out) {
    if (static_cast<size_t>(id) < outputs.size()) return;
    // Ids are handed out in order; a gap means an earlier allocation failed part-way.
    if (static_cast<size_t>(id) != outputs.size()) {
      detail::throw_error(ErrorCode::kBackend, "CUDA graph ", id, "'s slots follow ",
                          outputs.size(), " allocated graphs: an earlier allocation failed");
    }
    std::vector<void*> slots;
    void* o = nullptr;
    try {
      for (const TensorRef& t : in) {
        slots.push_back(nullptr);
        cuda::check_cuda(static_cast<int>(cudaMalloc(&slots.back(), t.bytes())),
                         "cudaMalloc (graph slot)");
      }
      cuda::check_cuda(static_cast<int>(cudaMalloc(&o, out.bytes())), "cudaMalloc (graph slot)");
    } catch (...) {
      for (void* p : slots) cudaFree(p);  // cudaFree(nullptr) is a no-op
      throw;
    }
    inputs.push_back(std::move(slots));
    outputs.push_back(o);
  }
};

TensorRef tensor_ref(const Ort::Value& v) {
  const auto info = v.GetTensorTypeAndShapeInfo();
  return {v.GetTensorData<float>(), info.GetShape()};
}

void copy_async(const SlotCopy& c, cudaStream_t stream) {
  cuda::check_cuda(
      static_cast<int>(cudaMemcpyAsync(c.dst, c.src, c.bytes, cudaMemcpyDeviceToDevice, stream)),
      "cudaMemcpyAsync (graph slot)");
}

// One UNet call through the session's CUDA graph for its input shapes: the inputs copied
// into the graph's slots, the graph captured (first calls) or replayed, its output copied
// out, all on the lane's stream. Shapes beyond the plan's graphs run launched
// (gpu_graph_id -1) on the loop's own buffers.
void run_graphed(GraphSlots& g, NamedSession& s, UnetTensors& t, Ort::RunOptions& run_options,
                 const Ort::MemoryInfo& mem, cudaStream_t stream) {
  std::vector<TensorRef> in;
  std::vector<Shape> shapes;
  for (const auto& v : t.inputs) {
    in.push_back(tensor_ref(v));
    shapes.push_back(in.back().shape);
  }
  const TensorRef out = tensor_ref(t.output);
  const int id = g.plan.graph_for(shapes);
  run_options.AddConfigEntry(kGpuGraphIdKey, gpu_graph_id_value(id).c_str());
  Ort::IoBinding binding(*s.session);
  if (id == CudaGraphPlan::kNoGraph) {
    for (size_t i = 0; i < t.inputs.size(); ++i) binding.BindInput(s.inputs[i], t.inputs[i]);
    binding.BindOutput(s.outputs[0], t.output);
    s.session->Run(run_options, binding);
    return;
  }
  g.ensure(id, in, out);
  const auto& slots = g.inputs[static_cast<size_t>(id)];
  void* out_slot = g.outputs[static_cast<size_t>(id)];
  const SlotCopies copies = slot_copies(in, slots, out, out_slot);
  for (const SlotCopy& c : copies.before) copy_async(c, stream);
  std::vector<Ort::Value> fixed;
  for (size_t i = 0; i < in.size(); ++i) {
    const size_t count = in[i].bytes() / sizeof(float);
    fixed.push_back(Ort::Value::CreateTensor<float>(mem, static_cast<float*>(slots[i]), count,
                                                    in[i].shape.data(), in[i].shape.size()));
    binding.BindInput(s.inputs[i], fixed.back());
  }
  Ort::Value fixed_out = Ort::Value::CreateTensor<float>(mem, static_cast<float*>(out_slot),
                                                         out.bytes() / sizeof(float),
                                                         out.shape.data(), out.shape.size());
  binding.BindOutput(s.outputs[0], fixed_out);
  s.session->Run(run_options, binding);
  copy_async(copies.after, stream);
}

}  // namespace

struct OrtCudaBackend::Impl {
  OrtCudaBackendConfig config;
  std::vector<cudaStream_t> streams;                              // one per lane
  std::vector<std::vector<std::unique_ptr<NamedSession>>> unets;  // [lane][unet]
  // With CUDA graphs: [lane][unet]; empty when the UNets launch every kernel.
  std::vector<std::vector<std::unique_ptr<GraphSlots>>> graphs;
  std::string graphs_off;  // why the UNets launch every kernel, when they were asked not to

  std::vector<std::unique_ptr<NamedSession>> make_lane_unets(cudaStream_t s, bool first_lane);
  std::vector<std::unique_ptr<NamedSession>> text_encoders;
  std::unique_ptr<NamedSession> vae_decoder;
  Ort::MemoryInfo device_memory{nullptr};

  ~Impl() {
    unets.clear();
    graphs.clear();
    text_encoders.clear();
    vae_decoder.reset();
    try {
      cuda::DeviceScope device(config.device_id);
      for (cudaStream_t s : streams) cudaStreamDestroy(s);
    } catch (const W2sdError&) {  // the device is gone: nothing left to destroy
    }
  }
};

// One lane's UNet sessions on `stream`. Where the UNets' CUDA EP options ask for CUDA graphs
// (the cuda build's default) and a session cannot have them (ONNX Runtime refuses a graph
// with compute nodes off the CUDA EP), every lane's sessions launch their kernels instead
// and unet_sessions() says why.
std::vector<std::unique_ptr<NamedSession>> OrtCudaBackend::Impl::make_lane_unets(cudaStream_t s,
                                                                                 bool first_lane) {
  auto make = [&](const OrtCudaBackendConfig& c) {
    const Ort::SessionOptions options =
        ort_call("UNet session options", [&] { return model_session_options(c, kUnetModel, s); });
    std::vector<std::unique_ptr<NamedSession>> lane_unets;
    for (const auto& path : c.base.unet_paths) {
      lane_unets.push_back(make_unet_session(path, c.base.unet_names, options));
    }
    return lane_unets;
  };
  OrtCudaBackendConfig launched = config;
  launched.provider_options = without_cuda_graph(config.provider_options);
  for (auto& kv : launched.model_provider_options) kv.second = without_cuda_graph(kv.second);
  const bool asked = config.provider == "cuda" && wants_cuda_graph(unet_cuda_options(config));
  if (!asked || (!first_lane && graphs.empty())) return make(launched);
  try {
    auto lane_unets = make(config);
    std::vector<std::unique_ptr<GraphSlots>> slots;
    for (size_t i = 0; i < lane_unets.size(); ++i) slots.push_back(std::make_unique<GraphSlots>());
    graphs.push_back(std::move(slots));
    return lane_unets;
  } catch (const W2sdError& e) {
    if (!first_lane) throw;  // lane 0's sessions had graphs: this is another failure
    graphs_off = e.what();
    return make(launched);
  }
}

OrtCudaBackend::OrtCudaBackend(const OrtCudaBackendConfig& config) {
  load_ort_library(config.base.library_path);
  W2SD_CHECK_ARG(config.provider == "cuda" || config.provider == "tensorrt",
                 "provider must be 'cuda' or 'tensorrt', got '", config.provider, "'");
  W2SD_CHECK_ARG(config.lanes >= 1, "lanes must be >= 1");
  if (cuda::device_count() <= config.device_id) {
    detail::throw_error(ErrorCode::kBackend, "CUDA device ", config.device_id,
                        " is not available (devices visible: ", cuda::device_count(), ")");
  }
  for (const auto& kv : config.model_provider_options) {
    W2SD_CHECK_ARG(
        kv.first == kUnetModel || kv.first == kTextEncoderModel || kv.first == kVaeDecoderModel,
        "model_provider_options: unknown model kind '", kv.first, "'");
  }
  cuda::DeviceScope device(config.device_id);
  impl_ = std::make_unique<Impl>();
  impl_->config = config;
  impl_->device_memory =
      Ort::MemoryInfo("Cuda", OrtDeviceAllocator, config.device_id, OrtMemTypeDefault);
  for (int lane = 0; lane < config.lanes; ++lane) {
    cudaStream_t s = nullptr;
    cuda::check_cuda(static_cast<int>(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)),
                     "cudaStreamCreate");
    impl_->streams.push_back(s);
    impl_->unets.push_back(impl_->make_lane_unets(s, lane == 0));
  }
  // One-off calls outside the loop (host in, host out, from any thread): on ONNX Runtime's
  // own streams, so that they never queue behind a lane's loop or each other's calls.
  cudaStream_t s0 = nullptr;
  if (!config.base.text_encoder_paths.empty()) {
    const Ort::SessionOptions options = ort_call("text encoder session options", [&] {
      return model_session_options(config, kTextEncoderModel, s0);
    });
    for (size_t i = 0; i < config.base.text_encoder_paths.size(); ++i) {
      impl_->text_encoders.push_back(std::make_unique<NamedSession>(
          config.base.text_encoder_paths[i], config.base.text_encoder_names[i], options,
          "text encoder"));
    }
  }
  if (!config.base.vae_decoder_path.empty()) {
    const Ort::SessionOptions options = ort_call("VAE decoder session options", [&] {
      return model_session_options(config, kVaeDecoderModel, s0);
    });
    impl_->vae_decoder = make_vae_decoder_session(config.base.vae_decoder_path,
                                                  config.base.vae_decoder_names, options);
  }
}

OrtCudaBackend::~OrtCudaBackend() = default;

int OrtCudaBackend::device_id() const { return impl_->config.device_id; }

int OrtCudaBackend::num_lanes() const { return static_cast<int>(impl_->streams.size()); }

void* OrtCudaBackend::stream(int lane) {
  W2SD_CHECK_ARG(lane >= 0 && lane < num_lanes(), "lane ", lane, " out of range");
  return impl_->streams[static_cast<size_t>(lane)];
}

int OrtCudaBackend::num_unets() const {
  return static_cast<int>(impl_->config.base.unet_paths.size());
}

int OrtCudaBackend::num_text_encoders() const {
  return static_cast<int>(impl_->text_encoders.size());
}

void OrtCudaBackend::run_unet(int unet, const UnetInputs& in, float* out) {
  W2SD_CHECK_ARG(in.lane >= 0 && in.lane < num_lanes(), "lane ", in.lane, " out of range");
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  W2SD_CHECK_ARG(in.timestep_device != nullptr, "device UNet calls need timestep_device");
  NamedSession& s = *impl_->unets[static_cast<size_t>(in.lane)][static_cast<size_t>(unet)];
  cuda::DeviceScope device(impl_->config.device_id);
  ort_call("UNet (CUDA)", [&] {
    UnetTensors t;
    make_unet_tensors(impl_->device_memory, s, in, in.timestep_device, in.lora_scale_device, out,
                      &t);
    Ort::RunOptions run_options;
    // Work stays queued on the lane's stream; the next kernel is ordered after it.
    run_options.AddConfigEntry("disable_synchronize_execution_providers", "1");
    if (impl_->graphs.empty()) {
      Ort::IoBinding binding(*s.session);
      for (size_t i = 0; i < t.inputs.size(); ++i) binding.BindInput(s.inputs[i], t.inputs[i]);
      binding.BindOutput(s.outputs[0], t.output);
      s.session->Run(run_options, binding);
      return 0;
    }
    run_graphed(*impl_->graphs[static_cast<size_t>(in.lane)][static_cast<size_t>(unet)], s, t,
                run_options, impl_->device_memory, impl_->streams[static_cast<size_t>(in.lane)]);
    return 0;
  });
}

std::vector<std::string> OrtCudaBackend::unet_sessions(int unet) const {
  W2SD_CHECK_ARG(unet >= 0 && unet < num_unets(), "UNet index ", unet, " out of range");
  if (impl_->graphs.empty()) {
    if (impl_->graphs_off.empty()) return {"launched"};
    return {"launched (CUDA graphs refused: " + impl_->graphs_off + ")"};
  }
  std::vector<std::string> out;
  const GraphSlots& g = *impl_->graphs[0][static_cast<size_t>(unet)];
  for (int id = 0; id < g.plan.num_graphs(); ++id) {
    std::string shape = "cuda-graph " + std::to_string(id) + ":";
    for (const Shape& s : g.plan.input_shapes(id)) {
      shape += " [";
      for (size_t d = 0; d < s.size(); ++d) shape += (d ? "," : "") + std::to_string(s[d]);
      shape += "]";
    }
    out.push_back(shape);
  }
  out.push_back("launched beyond " + std::to_string(kMaxGraphsPerSession) + " shapes");
  return out;
}

std::vector<HostTensor> OrtCudaBackend::encode_text(int encoder, const int64_t* input_ids,
                                                    int64_t batch, int64_t length) {
  W2SD_CHECK_ARG(encoder >= 0 && encoder < num_text_encoders(), "text encoder index ", encoder,
                 " out of range");
  cuda::DeviceScope device(impl_->config.device_id);
  return encode_text_on_host(*impl_->text_encoders[static_cast<size_t>(encoder)], input_ids, batch,
                             length);
}

HostTensor OrtCudaBackend::decode_latents(const float* latents, int64_t batch, int64_t channels,
                                          int64_t height, int64_t width) {
  cuda::DeviceScope device(impl_->config.device_id);
  return decode_on_host(impl_->vae_decoder.get(), latents, batch, channels, height, width);
}

}  // namespace w2sd
