// Dropping the resident pages of read-only file mappings (Linux). OpenVINO's ONNX frontend
// memory-maps each model's external weights and reads all of them while it compiles and,
// on the first run of a shape, while its CPU plugin repacks them into memory of its own:
// the mapped file then stays resident next to that copy (about 2x the weights in RSS).
// The pages are clean and file-backed, so dropping them loses nothing; a later read faults
// them back in from the page cache.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace w2sd {

// Held by each trimming pass and wherever this process frees what may hold a mapping the
// trimmer advises (an OpenVINO model or compiled model; OpenVINO keeps a model's weights
// mapped until then): a range read from /proc/self/maps stays that file's mapping until it
// is advised, so the advice never lands on memory mapped over the range (MADV_DONTNEED would
// zero it). A plain mutex: passes are short, and a free never waits behind a stream of them.
std::mutex& file_mapping_mutex();

// madvise(MADV_DONTNEED) on every mapping of this process that is backed by a file under
// one of `dirs`, readable and neither writable nor executable (a private writable mapping
// could hold changes). Returns the bytes of the mappings advised; 0 off Linux.
size_t trim_mapped_files(const std::vector<std::string>& dirs);

// Returns the heap memory that malloc holds free to the system (glibc's malloc_trim): making
// an OpenVINO session frees gigabytes of temporaries (the model's weights serialised for
// OpenVINO, their fp32 copies) that would otherwise stay in this process's RSS. No-op
// elsewhere.
void release_free_heap();

// While alive, trims those mappings every `interval` on a thread of its own (so the peak,
// not only the end state, stays low); once more when destroyed. No thread if `dirs` is empty.
class MappedFileTrimmer {
 public:
  MappedFileTrimmer(std::vector<std::string> dirs, std::chrono::milliseconds interval);
  ~MappedFileTrimmer();
  MappedFileTrimmer(const MappedFileTrimmer&) = delete;
  MappedFileTrimmer& operator=(const MappedFileTrimmer&) = delete;

 private:
  std::vector<std::string> dirs_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace w2sd
