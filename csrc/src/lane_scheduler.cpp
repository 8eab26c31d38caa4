#include "w2sd/lane_scheduler.h"

#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

namespace w2sd {

std::vector<LaneJobResult> run_on_lanes(int64_t num_jobs, int lanes,
                                        const std::function<void(int64_t, int)>& job) {
  W2SD_CHECK_ARG(lanes >= 1, "lanes must be >= 1, got ", lanes);
  W2SD_CHECK_ARG(num_jobs >= 0, "num_jobs must be >= 0");
  std::vector<LaneJobResult> results(static_cast<size_t>(num_jobs));
  std::mutex queue_mutex;
  int64_t next_job = 0;
  std::atomic<int64_t> seq{0};

  auto lane_main = [&](int lane) {
    for (;;) {
      int64_t j;
      {
        // Taking the next job and numbering its start happen together: FIFO.
        std::lock_guard<std::mutex> lock(queue_mutex);
        if (next_job >= num_jobs) return;
        j = next_job++;
        results[static_cast<size_t>(j)].start_seq = seq++;
      }
      LaneJobResult& r = results[static_cast<size_t>(j)];
      r.lane = lane;
      try {
        job(j, lane);
        r.ok = true;
      } catch (const W2sdError& e) {
        r.code = e.code();
        r.error = e.what();
        r.exception = std::current_exception();
      } catch (const std::exception& e) {
        r.code = ErrorCode::kInternal;
        r.error = e.what();
        r.exception = std::current_exception();
      } catch (...) {
        r.code = ErrorCode::kInternal;
        r.error = "unknown exception";
        r.exception = std::current_exception();
      }
      r.end_seq = seq++;
    }
  };

  const int n_threads = static_cast<int>(std::min<int64_t>(lanes, std::max<int64_t>(num_jobs, 1)));
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n_threads));
  for (int lane = 0; lane < n_threads; ++lane) threads.emplace_back(lane_main, lane);
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace w2sd
