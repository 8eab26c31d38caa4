#include "w2sd/cuda/device_loop.h"

#include <cuda_runtime.h>

#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "w2sd/cuda/kernels.h"
#include "w2sd/device_workspace.h"
#include "w2sd/guided_denoiser.h"
#include "w2sd/status.h"

namespace w2sd::cuda {
namespace {

void check(cudaError_t code, const char* what) { check_cuda(static_cast<int>(code), what); }

// One lane's device memory and events, kept across requests. The lane pool gives a lane
// to one request at a time, so nothing here is shared between threads. The buffer grows
// stream-ordered on the lane's stream (cudaFreeAsync / cudaMallocAsync: no device-wide
// synchronisation, unlike cudaFree) and only when a request needs more than it has.
class LaneWorkspace {
 public:
  LaneWorkspace(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  ~LaneWorkspace() {
    try {
      DeviceScope scope(device_);
      cudaStreamSynchronize(stream_);  // nothing queued may still use the buffer
      if (base_ != nullptr) cudaFree(base_);
      for (cudaEvent_t e : timers_) cudaEventDestroy(e);
      for (cudaEvent_t e : marks_) cudaEventDestroy(e);
    } catch (const W2sdError&) {  // the device is gone: nothing left to free
    }
  }
  LaneWorkspace(const LaneWorkspace&) = delete;
  LaneWorkspace& operator=(const LaneWorkspace&) = delete;

  cudaStream_t stream() const { return stream_; }

  // At least `bytes` of device memory (256-byte aligned), valid until the next reserve().
  unsigned char* reserve(size_t bytes) {
    const size_t capacity = grown_capacity(capacity_, bytes);
    if (capacity != capacity_) {
      if (base_ != nullptr) check(cudaFreeAsync(base_, stream_), "cudaFreeAsync");
      base_ = nullptr;
      capacity_ = 0;
      check(cudaMallocAsync(&base_, capacity, stream_), "cudaMallocAsync");
      capacity_ = capacity;
    }
    return static_cast<unsigned char*>(base_);
  }

  // The host image of what a request uploads (reused; the upload from it completes
  // before the request ends).
  std::vector<unsigned char>& staging() { return staging_; }

  // Timing event `i` of this lane (created on first use).
  cudaEvent_t timer(size_t i) { return nth(timers_, i, cudaEventDefault); }
  // Marker event `i`, waited on by blocking the host thread rather than spinning.
  cudaEvent_t mark(size_t i) {
    return nth(marks_, i, cudaEventBlockingSync | cudaEventDisableTiming);
  }

 private:
  int device_;
  cudaStream_t stream_;
  void* base_ = nullptr;
  size_t capacity_ = 0;
  std::vector<unsigned char> staging_;
  std::vector<cudaEvent_t> timers_, marks_;

  static cudaEvent_t nth(std::vector<cudaEvent_t>& events, size_t i, unsigned flags) {
    while (events.size() <= i) {
      cudaEvent_t e = nullptr;
      check(cudaEventCreateWithFlags(&e, flags), "cudaEventCreate");
      events.push_back(e);
    }
    return events[i];
  }
};

// Waits for everything queued on `stream` so far, sleeping rather than spinning.
void wait_for(LaneWorkspace& ws, size_t mark, cudaStream_t stream) {
  check(cudaEventRecord(ws.mark(mark), stream), "cudaEventRecord");
  check(cudaEventSynchronize(ws.mark(mark)), "cudaEventSynchronize");
}

// The buffers of one request, in workspace order: what is uploaded first (one copy),
// then the loop's scratch.
enum Buffer : size_t {
  kText = 0,  // + 3 * role: text, pooled, time_ids per role
  kTimesteps = 3 * kNumRoles,
  kLoraScales,
  kLatents,
  kUploaded,  // everything before this is uploaded
  kStrong = kUploaded,
  kSampleIn,
  kUnetOut,
  kNumBuffers
};

// The guided denoiser's buffers in one lane's device workspace: conditioning, a slot per
// timestep and per role's LoRA scale, and the latents are uploaded in one copy.
class DeviceMemory final : public DenoiserMemory {
 public:
  DeviceMemory(LaneWorkspace& ws, GuidancePlan plan, const std::vector<int64_t>& timesteps,
               const LoopRequest& request, const float* latents, int64_t max_calls)
      : ws_(ws), stream_(ws.stream()), timesteps_(timesteps), max_calls_(max_calls) {
    const size_t n = static_cast<size_t>(request.shape.count());
    std::array<std::vector<float>, kUploaded> host;
    for (size_t r = 0; r < kNumRoles; ++r) {
      host[kText + 3 * r] = std::move(plan.roles[r].text);
      host[kText + 3 * r + 1] = std::move(plan.roles[r].pooled);
      host[kText + 3 * r + 2] = std::move(plan.roles[r].time_ids);
    }
    plan_ = std::move(plan);
    host[kTimesteps] = slot_table(std::vector<float>(timesteps.begin(), timesteps.end()));
    std::vector<float> lora_scales;
    for (const auto& c : request.roles) lora_scales.push_back(c.lora_scale);
    host[kLoraScales] = slot_table(lora_scales);
    host[kLatents].assign(latents, latents + n);
    for (size_t k = 0; k < kUploaded; ++k) bytes_[k] = host[k].size() * sizeof(float);
    bytes_[kStrong] = n * sizeof(float);
    bytes_[kSampleIn] = bytes_[kUnetOut] = (plan_.any_doubled ? 2 : 1) * n * sizeof(float);
    layout_ = plan_workspace(std::vector<size_t>(bytes_.begin(), bytes_.end()));
    base_ = ws.reserve(layout_.bytes);
    const size_t upload_bytes = layout_.offsets[kUploaded];
    std::vector<unsigned char>& staging = ws.staging();
    staging.assign(upload_bytes, 0);
    for (size_t k = 0; k < kUploaded; ++k) {
      if (bytes_[k] > 0)
        std::memcpy(staging.data() + layout_.offsets[k], host[k].data(), bytes_[k]);
    }
    check(cudaMemcpyAsync(base_, staging.data(), upload_bytes, cudaMemcpyHostToDevice, stream_),
          "upload");
    n_ = static_cast<int64_t>(n);
  }

  float* at(size_t b) const {
    return bytes_[b] == 0 ? nullptr : reinterpret_cast<float*>(base_ + layout_.offsets[b]);
  }
  const GuidancePlan& plan() const { return plan_; }

  std::array<const float*, 3> conditioning(Role role) override {
    const size_t k = kText + 3 * static_cast<size_t>(role);
    return {at(k), at(k + 1), at(k + 2)};
  }

  const float* pack_sample(const float* x, bool doubled) override {
    check_cuda(launch_pack_sample(x, at(kSampleIn), DType::kFloat32, doubled, n_, stream_),
               "pack sample");
    return at(kSampleIn);
  }

  void place_scalars(UnetInputs& in, Role role, int64_t timestep) override {
    in.timestep_device = at(kTimesteps) + timestep_index(timestep) * kSlotFloats;
    in.lora_scale_device = at(kLoraScales) + static_cast<size_t>(role) * kSlotFloats;
  }

  const float* run_unet(InferenceBackend& backend, int unet, const UnetInputs& in) override {
    const size_t call = static_cast<size_t>(calls_);
    W2SD_CHECK_INTERNAL(calls_ < max_calls_, "more UNet calls than 3 per step");
    check(cudaEventRecord(ws_.timer(2 * call), stream_), "cudaEventRecord");
    backend.run_unet(unet, in, at(kUnetOut));
    check(cudaEventRecord(ws_.timer(2 * call + 1), stream_), "cudaEventRecord");
    ++calls_;
    return at(kUnetOut);
  }

  void update(const float* e, bool guided, float g, const float* x, float* out, int64_t n,
              const DdimCoeffs& c, PredictionType prediction) override {
    check_cuda(
        launch_guided_ddim_update(e, DType::kFloat32, guided, g, x, out, n, c, prediction, stream_),
        "guided DDIM update");
  }

  // Sum of the UNet calls' event-timed durations.
  double unet_seconds() {
    double seconds = 0.0;
    for (size_t call = 0; call < static_cast<size_t>(calls_); ++call) {
      float ms = 0.0f;
      check(cudaEventElapsedTime(&ms, ws_.timer(2 * call), ws_.timer(2 * call + 1)),
            "cudaEventElapsedTime");
      seconds += ms / 1000.0;
    }
    return seconds;
  }

 private:
  size_t timestep_index(int64_t t) const {
    for (size_t i = 0; i < timesteps_.size(); ++i) {
      if (timesteps_[i] == t) return i;
    }
    detail::throw_error(ErrorCode::kInternal, "timestep ", t, " not in the schedule");
  }

  LaneWorkspace& ws_;
  cudaStream_t stream_;
  GuidancePlan plan_;  // the flags; its rows were moved into the upload
  const std::vector<int64_t>& timesteps_;
  int64_t max_calls_;
  std::array<size_t, kNumBuffers> bytes_{};
  WorkspaceLayout layout_;
  unsigned char* base_ = nullptr;
  int64_t n_ = 0;
  int64_t calls_ = 0;
};

// Progress reports steps the device has finished, not steps queued: after queueing step
// k the host waits for step k-1 (so the device always has the next step queued) and
// reports it; the caller reports the last step once the stream is done.
ProgressFn device_progress(LaneWorkspace& ws, const ProgressFn& progress, int64_t* reported) {
  if (!progress) return {};
  return [&ws, &progress, reported](int64_t done, int64_t total) {
    cudaStream_t stream = ws.stream();
    check(cudaEventRecord(ws.mark(static_cast<size_t>(done - 1)), stream), "cudaEventRecord");
    if (done < 2) return true;
    check(cudaEventSynchronize(ws.mark(static_cast<size_t>(done - 2))), "cudaEventSynchronize");
    *reported = done - 1;
    report_progress(progress, done - 1, total);
    return true;
  };
}

LoopStats run_loop_on_device(InferenceBackend& backend, LaneWorkspace& ws,
                             const DdimSchedule& schedule, const ReflectionSchedule& reflection,
                             const LoopRequest& request, float* latents, const ProgressFn& progress,
                             int lane) {
  cudaStream_t stream = ws.stream();
  const size_t n = static_cast<size_t>(request.shape.count());
  const int64_t steps = schedule.num_steps();
  // Timers: 2 per UNet call (start, end). Marks: one per step (done), then the end.
  DeviceMemory memory(ws, plan_guidance(request, BatchPolicy::kOneBatchForEveryCall),
                      schedule.timesteps(), request, latents, 3 * steps);
  const GuidancePlan& plan = memory.plan();
  GuidedDenoiser model(backend, request, plan, memory, schedule.prediction_type(), lane);
  int64_t reported = 0;
  const ProgressFn on_step = device_progress(ws, progress, &reported);
  const auto start = std::chrono::steady_clock::now();
  float* x = memory.at(kLatents);
  try {
    run_reflection_loop(schedule, reflection, request.inversion, model.as_step_fn(), x,
                        memory.at(kStrong), on_step);
    check(cudaMemcpyAsync(latents, x, n * sizeof(float), cudaMemcpyDeviceToHost, stream),
          "download latents");
    wait_for(ws, static_cast<size_t>(steps), stream);
  } catch (...) {
    // Cancelled or failed with work still queued: let it drain before the lane (and its
    // buffer) is handed to the next request or freed.
    cudaStreamSynchronize(stream);
    cudaGetLastError();
    throw;
  }
  LoopStats stats;
  stats.lane = lane;
  stats.loop_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.unet_calls = model.unet_calls();
  stats.unet_seconds = memory.unet_seconds();
  if (reported < steps) report_progress(progress, steps, steps);
  return stats;
}

class DeviceLoopExecutor final : public LoopExecutor {
 public:
  LoopStats run(InferenceBackend& backend, const DdimSchedule& schedule,
                const ReflectionSchedule& reflection, const LoopRequest& request, float* latents,
                const ProgressFn& progress, int lane) override {
    W2SD_CHECK_INTERNAL(backend.memory() == MemoryKind::kCudaDevice, "not a CUDA backend");
    DeviceScope device(backend.device_id());
    return run_loop_on_device(backend, workspace(backend, lane), schedule, reflection, request,
                              latents, progress, lane);
  }

 private:
  // The lane's workspace, created on its first request.
  LaneWorkspace& workspace(InferenceBackend& backend, int lane) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t i = static_cast<size_t>(lane);
    if (lanes_.size() <= i) lanes_.resize(i + 1);
    if (!lanes_[i]) {
      lanes_[i] = std::make_unique<LaneWorkspace>(backend.device_id(),
                                                  static_cast<cudaStream_t>(backend.stream(lane)));
    }
    return *lanes_[i];
  }

  std::mutex mutex_;
  std::vector<std::unique_ptr<LaneWorkspace>> lanes_;
};

}  // namespace

std::unique_ptr<LoopExecutor> make_device_executor() {
  return std::make_unique<DeviceLoopExecutor>();
}

}  // namespace w2sd::cuda
