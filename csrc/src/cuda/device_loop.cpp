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

// [first; second] or second alone.
std::vector<float> stacked(const float* first, const float* second, size_t n, bool both) {
  std::vector<float> out;
  out.reserve(both ? 2 * n : n);
  if (both) out.insert(out.end(), first, first + n);
  out.insert(out.end(), second, second + n);
  return out;
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

struct RequestBuffers {
  std::array<std::vector<float>, kUploaded> host;  // what each uploaded buffer holds
  std::array<size_t, kNumBuffers> bytes{};
  WorkspaceLayout layout;
  unsigned char* base = nullptr;
  float* at(size_t b) const {
    return bytes[b] == 0 ? nullptr : reinterpret_cast<float*>(base + layout.offsets[b]);
  }
};

LoopStats run_loop_on_device(InferenceBackend& backend, LaneWorkspace& ws,
                             const DdimSchedule& schedule, const ReflectionSchedule& reflection,
                             const LoopRequest& request, float* latents, const ProgressFn& progress,
                             int lane) {
  cudaStream_t stream = ws.stream();
  const LatentShape& shape = request.shape;
  const ConditioningShape& cs = request.cond_shape;
  const size_t n = static_cast<size_t>(shape.count());
  const size_t b = static_cast<size_t>(shape.batch);
  const bool added = cs.pooled_dim > 0;

  // Host images of the uploads: conditioning per role, a slot per timestep and per role's
  // LoRA scale, the latents.
  RequestBuffers buf;
  std::vector<bool> guided(kNumRoles);
  for (size_t r = 0; r < kNumRoles; ++r) {
    guided[r] = request.roles[r].guidance != 1.0f;  // check_conditioning vouched
  }
  // One UNet batch for every call (see doubled_batch): an unguided role is padded to
  // [cond; cond].
  const std::vector<bool> doubled = doubled_batch(guided);
  const bool any_guided = doubled[0];
  for (size_t r = 0; r < kNumRoles; ++r) {
    const RoleConditioning& c = request.roles[r];
    const float* first = guided[r] ? c.uncond : c.cond;
    const float* first_pooled = guided[r] ? c.uncond_pooled : c.cond_pooled;
    const bool d = doubled[r];
    const size_t k = kText + 3 * r;
    if (cs.text_len > 0) {  // an unconditional denoiser has no text
      buf.host[k] = stacked(first, c.cond, b * cs.text_len * cs.text_dim, d);
    }
    if (added) {
      buf.host[k + 1] = stacked(first_pooled, c.cond_pooled, b * cs.pooled_dim, d);
      buf.host[k + 2] = stacked(c.time_ids, c.time_ids, b * cs.time_ids_dim, d);
    }
  }
  const auto& ts = schedule.timesteps();
  buf.host[kTimesteps] = slot_table(std::vector<float>(ts.begin(), ts.end()));
  std::vector<float> lora_scales;
  for (const auto& c : request.roles) lora_scales.push_back(c.lora_scale);
  buf.host[kLoraScales] = slot_table(lora_scales);
  buf.host[kLatents].assign(latents, latents + n);
  for (size_t k = 0; k < kUploaded; ++k) buf.bytes[k] = buf.host[k].size() * sizeof(float);
  buf.bytes[kStrong] = n * sizeof(float);
  buf.bytes[kSampleIn] = buf.bytes[kUnetOut] = (any_guided ? 2 : 1) * n * sizeof(float);
  buf.layout = plan_workspace(std::vector<size_t>(buf.bytes.begin(), buf.bytes.end()));
  buf.base = ws.reserve(buf.layout.bytes);

  const size_t upload_bytes = buf.layout.offsets[kUploaded];
  std::vector<unsigned char>& staging = ws.staging();
  staging.assign(upload_bytes, 0);
  for (size_t k = 0; k < kUploaded; ++k) {
    if (buf.bytes[k] > 0) {
      std::memcpy(staging.data() + buf.layout.offsets[k], buf.host[k].data(), buf.bytes[k]);
    }
  }
  check(cudaMemcpyAsync(buf.base, staging.data(), upload_bytes, cudaMemcpyHostToDevice, stream),
        "upload");

  LoopStats stats;
  stats.lane = lane;
  const PredictionType prediction = schedule.prediction_type();
  auto timestep_index = [&](int64_t t) {
    for (size_t i = 0; i < ts.size(); ++i) {
      if (ts[i] == t) return i;
    }
    detail::throw_error(ErrorCode::kInternal, "timestep ", t, " not in the schedule");
  };
  // Timers: 2 per UNet call (start, end). Marks: one per step (done), then the end.
  const int64_t steps = schedule.num_steps();
  const size_t max_calls = static_cast<size_t>(3 * steps);
  auto step_event = [&](int64_t step) { return ws.mark(static_cast<size_t>(step)); };
  float* sample_in = buf.at(kSampleIn);
  float* unet_out = buf.at(kUnetOut);
  const GuidedStepFn step = [&](Role role, const float* xin, int64_t t, const DdimCoeffs& c,
                                float* out) {
    const size_t r = static_cast<size_t>(role);
    const bool g = guided[r];
    const bool d = doubled[r];
    const RoleConditioning& rc = request.roles[r];
    check_cuda(
        launch_pack_sample(xin, sample_in, DType::kFloat32, d, static_cast<int64_t>(n), stream),
        "pack sample");
    UnetInputs in;
    in.sample = sample_in;
    in.batch = (d ? 2 : 1) * shape.batch;
    in.channels = shape.channels;
    in.height = shape.height;
    in.width = shape.width;
    in.timestep_device = buf.at(kTimesteps) + timestep_index(t) * kSlotFloats;
    in.lora_scale_device = buf.at(kLoraScales) + r * kSlotFloats;
    in.text = buf.at(kText + 3 * r);
    in.text_len = cs.text_len;
    in.text_dim = cs.text_dim;
    if (added) {
      in.text_embeds = buf.at(kText + 3 * r + 1);
      in.pooled_dim = cs.pooled_dim;
      in.time_ids = buf.at(kText + 3 * r + 2);
      in.time_ids_dim = cs.time_ids_dim;
    }
    in.lane = lane;
    const size_t call = static_cast<size_t>(stats.unet_calls);
    W2SD_CHECK_INTERNAL(call < max_calls, "more UNet calls than 3 per step");
    check(cudaEventRecord(ws.timer(2 * call), stream), "cudaEventRecord");
    backend.run_unet(rc.unet, in, unet_out);
    check(cudaEventRecord(ws.timer(2 * call + 1), stream), "cudaEventRecord");
    ++stats.unet_calls;
    check_cuda(launch_guided_ddim_update(unet_out, DType::kFloat32, g, rc.guidance, xin, out,
                                         static_cast<int64_t>(n), c, prediction, stream),
               "guided DDIM update");
  };
  // Progress reports steps the device has finished, not steps queued: after queueing step
  // k the host waits for step k-1 (so the device always has the next step queued) and
  // reports it; the last step is reported once the stream is done.
  int64_t reported = 0;
  ProgressFn on_step;
  if (progress) {
    on_step = [&](int64_t done, int64_t total) {
      check(cudaEventRecord(step_event(done - 1), stream), "cudaEventRecord");
      if (done < 2) return true;
      check(cudaEventSynchronize(step_event(done - 2)), "cudaEventSynchronize");
      reported = done - 1;
      if (!progress(done - 1, total)) {
        detail::throw_error(ErrorCode::kCancelled, "sampling cancelled after step ", done - 1,
                            " of ", total);
      }
      return true;
    };
  }
  const auto start = std::chrono::steady_clock::now();
  float* x = buf.at(kLatents);
  try {
    run_reflection_loop(schedule, reflection, request.inversion, step, x, buf.at(kStrong), on_step);
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
  stats.loop_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t call = 0; call < static_cast<size_t>(stats.unet_calls); ++call) {
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, ws.timer(2 * call), ws.timer(2 * call + 1)),
          "cudaEventElapsedTime");
    stats.unet_seconds += ms / 1000.0;
  }
  if (progress && reported < steps && !progress(steps, steps)) {
    detail::throw_error(ErrorCode::kCancelled, "sampling cancelled after step ", steps, " of ",
                        steps);
  }
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
