// The backend interface: what the core needs evaluated, nothing about how.
// Implementations: OrtCpuBackend (ONNX Runtime's CPU EP) and OpenVinoBackend (OpenVINO's
// own runtime), host memory; OrtCudaBackend (CUDA or TensorRT, device memory).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace w2sd {

// One UNet evaluation. Pointers are host memory for host backends; all float32.
struct UnetInputs {
  const float* sample = nullptr;  // (batch, channels, height, width)
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  float timestep = 0.0f;
  const float* timestep_device = nullptr;  // device backends: the timestep in device memory
  const float* text = nullptr;             // encoder_hidden_states (batch, text_len, text_dim)
  int64_t text_len = 0, text_dim = 0;
  // SDXL's added conditions (null for SD 1.x/2.x): pooled text embeddings
  // (batch, pooled_dim) and micro-conditioning time ids (batch, time_ids_dim).
  const float* text_embeds = nullptr;
  int64_t pooled_dim = 0;
  const float* time_ids = nullptr;
  int64_t time_ids_dim = 0;
  // The LoRA scale, for a UNet exported with its LoRA unfused (input "lora_scale", shape
  // [1]); other UNets ignore it. Device backends read it from lora_scale_device.
  float lora_scale = 0.0f;
  const float* lora_scale_device = nullptr;
  int lane = 0;  // which lane (stream, IO binding) runs this call; see lane_scheduler.h
};

// A float32 tensor owned by the caller after a one-off call (text, VAE).
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Where run_unet's pointers live: host memory, or the CUDA device (then the
// loop stays on the device, see cuda/device_loop.h).
enum class MemoryKind { kHost, kCudaDevice };

class InferenceBackend {
 public:
  virtual ~InferenceBackend() = default;
  virtual MemoryKind memory() const { return MemoryKind::kHost; }
  // The CUDA device of a device backend (every thread that touches its memory or
  // streams selects it first); -1 for host backends.
  virtual int device_id() const { return -1; }
  virtual int num_lanes() const { return 1 << 16; }  // host backends: any number of threads
  // The lane's CUDA stream (cudaStream_t) for device backends; null for host ones.
  virtual void* stream(int /*lane*/) { return nullptr; }
  virtual int num_unets() const = 0;
  // Writes the UNet output (same shape as the sample) into out.
  virtual void run_unet(int unet, const UnetInputs& in, float* out) = 0;
  // What UNet `unet` has sessions for: the input shapes of each session compiled for one
  // static shape (reshape_input_option's form), then "dynamic" for one that takes any shape.
  virtual std::vector<std::string> unet_sessions(int /*unet*/) const { return {"dynamic"}; }
  virtual int num_text_encoders() const = 0;
  // input_ids (batch, length) -> every output of text encoder `encoder`
  // (hidden states first; SDXL's second encoder also gives pooled embeddings).
  virtual std::vector<HostTensor> encode_text(int encoder, const int64_t* input_ids, int64_t batch,
                                              int64_t length) = 0;
  // Scaled latents (batch, c, h, w) -> image (batch, 3, 8h, 8w) in [-1, 1].
  virtual HostTensor decode_latents(const float* latents, int64_t batch, int64_t channels,
                                    int64_t height, int64_t width) = 0;
};

}  // namespace w2sd
