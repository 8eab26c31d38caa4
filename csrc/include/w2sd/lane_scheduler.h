// Several requests in flight at once ("lanes"). Within one request the
// reflection is a strict chain (strong -> weak -> denoiser); across requests it
// is not, so each lane runs its own request and lanes interleave: on CPU they
// are threads, on CUDA each lane also owns a stream, buffers and IO bindings,
// so one request's weak inversion runs while another's strong denoise does.
// The scheduler is backend independent.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "w2sd/status.h"

namespace w2sd {

struct LaneJobResult {
  bool ok = false;
  ErrorCode code = ErrorCode::kInternal;  // valid when !ok
  std::string error;                      // valid when !ok
  std::exception_ptr exception;           // valid when !ok: what the job threw, as thrown
  int lane = -1;                          // which lane ran the job
  int64_t start_seq = -1, end_seq = -1;   // global order of job starts and ends
};

// The lanes of one engine, each held by at most one request at a time: every call
// that runs a loop (sample() from any thread, each job of sample_many) checks a lane
// out and returns it when done, so two concurrent calls never share a lane's stream,
// buffers or sessions. acquire() blocks while every lane is taken, serves waiters in
// the order they came, and hands out the lowest free lane. A thread that already holds a
// lane of the pool (sample() called from a progress callback) and would wait gets an
// InvalidArgumentError instead of a deadlock.
class LanePool {
 public:
  explicit LanePool(int lanes);
  int acquire();
  void release(int lane);
  int size() const { return static_cast<int>(busy_.size()); }
  int in_use() const;

 private:
  int free_lane() const;  // -1 if none; mutex_ held

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<bool> busy_;
  uint64_t next_ticket_ = 0, serving_ = 0;  // FIFO among waiters
};

// A lane checked out of a pool for one scope.
class LaneLease {
 public:
  explicit LaneLease(LanePool& pool) : pool_(pool), lane_(pool.acquire()) {}
  ~LaneLease() {
    try {
      pool_.release(lane_);
    } catch (...) {  // release() only throws for a lane it never gave out
    }
  }
  LaneLease(const LaneLease&) = delete;
  LaneLease& operator=(const LaneLease&) = delete;
  int lane() const { return lane_; }

 private:
  LanePool& pool_;
  int lane_;
};

// Runs jobs 0..num_jobs-1 on `lanes` worker threads. Jobs start in FIFO order:
// a lane takes the next unstarted job as soon as it finishes its current one,
// so no job waits while a lane is idle. A job's exception is captured in its
// result and never affects another job. With a `pool`, each job runs on a lane
// checked out of it (shared with other callers); without, worker k is lane k.
std::vector<LaneJobResult> run_on_lanes(int64_t num_jobs, int lanes,
                                        const std::function<void(int64_t job, int lane)>& job,
                                        LanePool* pool = nullptr);

}  // namespace w2sd
