#include "w2sd/lane_scheduler.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

namespace w2sd {

LanePool::LanePool(int lanes) {
  W2SD_CHECK_ARG(lanes >= 1, "lanes must be >= 1, got ", lanes);
  busy_.assign(static_cast<size_t>(lanes), false);
}

namespace {
// The pools whose lanes this thread holds (one entry per lane held).
thread_local std::vector<const LanePool*> t_held;
}  // namespace

int LanePool::free_lane() const {
  for (size_t i = 0; i < busy_.size(); ++i) {
    if (!busy_[i]) return static_cast<int>(i);
  }
  return -1;
}

int LanePool::acquire() {
  std::unique_lock<std::mutex> lock(mutex_);
  int lane = -1;
  if (std::find(t_held.begin(), t_held.end(), this) != t_held.end()) {
    // Nested (sample() from a progress callback): waiting could be forever, since the
    // lane it would wait for may be its own. Take a free lane now or fail.
    lane = free_lane();
    if (lane < 0) {
      detail::throw_error(ErrorCode::kInvalidArgument,
                          "sample() called while this thread's own sampling holds a lane (from a "
                          "progress callback?) and every lane is busy: it would wait forever");
    }
  } else {
    const uint64_t ticket = next_ticket_++;
    changed_.wait(lock, [&] { return serving_ == ticket && free_lane() >= 0; });
    lane = free_lane();
    ++serving_;
  }
  busy_[static_cast<size_t>(lane)] = true;
  t_held.push_back(this);
  lock.unlock();
  changed_.notify_all();  // the next ticket may proceed if another lane is free
  return lane;
}

void LanePool::release(int lane) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    W2SD_CHECK_INTERNAL(lane >= 0 && lane < size() && busy_[static_cast<size_t>(lane)], "lane ",
                        lane, " released but not held");
    busy_[static_cast<size_t>(lane)] = false;
    const auto it = std::find(t_held.begin(), t_held.end(), this);
    if (it != t_held.end()) t_held.erase(it);
  }
  changed_.notify_all();
}

int LanePool::in_use() const {
  std::lock_guard<std::mutex> lock(mutex_);
  int n = 0;
  for (bool b : busy_) n += b ? 1 : 0;
  return n;
}

std::vector<LaneJobResult> run_on_lanes(int64_t num_jobs, int lanes,
                                        const std::function<void(int64_t, int)>& job,
                                        LanePool* pool) {
  W2SD_CHECK_ARG(lanes >= 1, "lanes must be >= 1, got ", lanes);
  W2SD_CHECK_ARG(num_jobs >= 0, "num_jobs must be >= 0");
  std::vector<LaneJobResult> results(static_cast<size_t>(num_jobs));
  std::mutex queue_mutex;
  int64_t next_job = 0;
  std::atomic<int64_t> seq{0};

  auto lane_main = [&](int worker) {
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
      try {
        if (pool != nullptr) {
          LaneLease lease(*pool);
          r.lane = lease.lane();
          job(j, lease.lane());
        } else {
          r.lane = worker;
          job(j, worker);
        }
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
  for (int worker = 0; worker < n_threads; ++worker) threads.emplace_back(lane_main, worker);
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace w2sd
