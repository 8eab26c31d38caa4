#include "w2sd/cuda/device_loop.h"

#include <cuda_runtime.h>

#include <array>
#include <chrono>
#include <vector>

#include "w2sd/cuda/kernels.h"
#include "w2sd/status.h"

namespace w2sd::cuda {
namespace {

// Owns one cudaMalloc allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) {
    if (bytes > 0) check_cuda(static_cast<int>(cudaMalloc(&ptr_, bytes)), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_) { o.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* f32() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

DeviceBuffer upload(const std::vector<float>& host, cudaStream_t stream) {
  DeviceBuffer buf(host.size() * sizeof(float));
  check_cuda(static_cast<int>(cudaMemcpyAsync(buf.f32(), host.data(), host.size() * sizeof(float),
                                              cudaMemcpyHostToDevice, stream)),
             "upload");
  return buf;
}

// [first; second] or second alone, on the host, ready to upload once.
std::vector<float> stacked(const float* first, const float* second, size_t n, bool both) {
  std::vector<float> out;
  out.reserve(both ? 2 * n : n);
  if (both) out.insert(out.end(), first, first + n);
  out.insert(out.end(), second, second + n);
  return out;
}

struct DeviceRole {
  bool guided = false;
  DeviceBuffer text, pooled, time_ids;
};

LoopStats run_loop_on_device(InferenceBackend& backend, const DdimSchedule& schedule,
                             const ReflectionSchedule& reflection, const LoopRequest& request,
                             float* latents, const ProgressFn& progress, int lane) {
  W2SD_CHECK_INTERNAL(backend.memory() == MemoryKind::kCudaDevice, "not a CUDA backend");
  auto stream = static_cast<cudaStream_t>(backend.stream(lane));
  const LatentShape& shape = request.shape;
  const ConditioningShape& cs = request.cond_shape;
  const size_t n = static_cast<size_t>(shape.count());
  const size_t b = static_cast<size_t>(shape.batch);
  const bool added = cs.pooled_dim > 0;

  // One-time uploads: conditioning per role, every timestep value, the latents.
  std::array<DeviceRole, kNumRoles> roles;
  bool any_guided = false;
  for (int r = 0; r < kNumRoles; ++r) {
    const RoleConditioning& c = request.roles[static_cast<size_t>(r)];
    DeviceRole& d = roles[static_cast<size_t>(r)];
    d.guided = c.guidance != 1.0f;  // check_conditioning has vouched for the pointers
    if (cs.text_len > 0) {          // an unconditional denoiser has no text
      d.text = upload(stacked(c.uncond, c.cond, b * cs.text_len * cs.text_dim, d.guided), stream);
    }
    if (added) {
      d.pooled =
          upload(stacked(c.uncond_pooled, c.cond_pooled, b * cs.pooled_dim, d.guided), stream);
      d.time_ids = upload(stacked(c.time_ids, c.time_ids, b * cs.time_ids_dim, d.guided), stream);
    }
    any_guided = any_guided || d.guided;
  }
  const auto& ts = schedule.timesteps();
  std::vector<float> t_values(ts.begin(), ts.end());
  DeviceBuffer t_dev = upload(t_values, stream);
  std::vector<float> lora_scales;
  for (const auto& c : request.roles) lora_scales.push_back(c.lora_scale);
  DeviceBuffer lora_dev = upload(lora_scales, stream);
  DeviceBuffer x = upload(std::vector<float>(latents, latents + n), stream);
  DeviceBuffer x_strong(n * sizeof(float));
  DeviceBuffer sample_in((any_guided ? 2 : 1) * n * sizeof(float));
  DeviceBuffer unet_out((any_guided ? 2 : 1) * n * sizeof(float));

  LoopStats stats;
  stats.lane = lane;
  const PredictionType prediction = schedule.prediction_type();
  auto timestep_index = [&](int64_t t) {
    for (size_t i = 0; i < ts.size(); ++i) {
      if (ts[i] == t) return i;
    }
    detail::throw_error(ErrorCode::kInternal, "timestep ", t, " not in the schedule");
  };
  const GuidedStepFn step = [&](Role role, const float* xin, int64_t t, const DdimCoeffs& c,
                                float* out) {
    const DeviceRole& d = roles[static_cast<size_t>(role)];
    const RoleConditioning& rc = request.roles[static_cast<size_t>(role)];
    check_cuda(launch_pack_sample(xin, sample_in.f32(), DType::kFloat32, d.guided,
                                  static_cast<int64_t>(n), stream),
               "pack sample");
    UnetInputs in;
    in.sample = sample_in.f32();
    in.batch = (d.guided ? 2 : 1) * shape.batch;
    in.channels = shape.channels;
    in.height = shape.height;
    in.width = shape.width;
    in.timestep_device = t_dev.f32() + timestep_index(t);
    in.lora_scale_device = lora_dev.f32() + static_cast<int>(role);
    in.text = d.text.f32();
    in.text_len = cs.text_len;
    in.text_dim = cs.text_dim;
    if (added) {
      in.text_embeds = d.pooled.f32();
      in.pooled_dim = cs.pooled_dim;
      in.time_ids = d.time_ids.f32();
      in.time_ids_dim = cs.time_ids_dim;
    }
    in.lane = lane;
    const auto start = std::chrono::steady_clock::now();
    backend.run_unet(rc.unet, in, unet_out.f32());
    stats.unet_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++stats.unet_calls;
    check_cuda(launch_guided_ddim_update(unet_out.f32(), DType::kFloat32, d.guided, rc.guidance,
                                         xin, out, static_cast<int64_t>(n), c, prediction, stream),
               "guided DDIM update");
  };
  const auto start = std::chrono::steady_clock::now();
  run_reflection_loop(schedule, reflection, request.inversion, step, x.f32(), x_strong.f32(),
                      progress);
  check_cuda(static_cast<int>(cudaMemcpyAsync(latents, x.f32(), n * sizeof(float),
                                              cudaMemcpyDeviceToHost, stream)),
             "download latents");
  check_cuda(static_cast<int>(cudaStreamSynchronize(stream)), "synchronize");
  stats.loop_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

class DeviceLoopExecutor final : public LoopExecutor {
 public:
  LoopStats run(InferenceBackend& backend, const DdimSchedule& schedule,
                const ReflectionSchedule& reflection, const LoopRequest& request, float* latents,
                const ProgressFn& progress, int lane) override {
    return run_loop_on_device(backend, schedule, reflection, request, latents, progress, lane);
  }
};

}  // namespace

std::unique_ptr<LoopExecutor> make_device_executor() {
  return std::make_unique<DeviceLoopExecutor>();
}

}  // namespace w2sd::cuda
