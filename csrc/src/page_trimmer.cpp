#include "w2sd/page_trimmer.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace w2sd {
namespace {

bool under(const std::string& path, const std::vector<std::string>& dirs) {
  for (const auto& d : dirs) {
    if (d.empty()) continue;
    const bool slash = d.back() == '/';
    if (path.size() > d.size() && path.compare(0, d.size(), d) == 0 &&
        (slash || path[d.size()] == '/')) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::mutex& file_mapping_mutex() {
  static std::mutex m;
  return m;
}

size_t trim_mapped_files(const std::vector<std::string>& dirs) {
  size_t advised = 0;
#if defined(__linux__)
  std::lock_guard<std::mutex> mappings_stay(file_mapping_mutex());
  // /proc/self/maps: "start-end perms offset dev inode path"
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode, path;
    if (!(fields >> range >> perms >> offset >> dev >> inode)) continue;
    std::getline(fields >> std::ws, path);
    if (path.empty() || perms.size() < 3 || perms[0] != 'r' || perms[1] != '-' || perms[2] != '-' ||
        !under(path, dirs)) {
      continue;
    }
    const size_t dash = range.find('-');
    if (dash == std::string::npos) continue;
    const uintptr_t start = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t end = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (end > start && madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED) == 0) {
      advised += end - start;
    }
  }
#else
  (void)dirs;
#endif
  return advised;
}

void release_free_heap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

MappedFileTrimmer::MappedFileTrimmer(std::vector<std::string> dirs,
                                     std::chrono::milliseconds interval)
    : dirs_(std::move(dirs)), interval_(interval) {
  if (dirs_.empty()) return;
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      lock.unlock();
      trim_mapped_files(dirs_);
      lock.lock();
      wake_.wait_for(lock, interval_, [this] { return stop_; });
    }
  });
}

MappedFileTrimmer::~MappedFileTrimmer() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  trim_mapped_files(dirs_);
}

}  // namespace w2sd
