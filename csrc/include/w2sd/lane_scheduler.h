// Several requests in flight at once ("lanes"). Within one request the
// reflection is a strict chain (strong -> weak -> denoiser); across requests it
// is not, so each lane runs its own request and lanes interleave: on CPU they
// are threads, on CUDA each lane also owns a stream, buffers and IO bindings,
// so one request's weak inversion runs while another's strong denoise does.
// The scheduler is backend independent.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
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

// Runs jobs 0..num_jobs-1 on `lanes` worker threads. Jobs start in FIFO order:
// a lane takes the next unstarted job as soon as it finishes its current one,
// so no job waits while a lane is idle. A job's exception is captured in its
// result and never affects another job.
std::vector<LaneJobResult> run_on_lanes(int64_t num_jobs, int lanes,
                                        const std::function<void(int64_t job, int lane)>& job);

}  // namespace w2sd
