// Which CUDA graph a UNet call replays, and the copies that put its inputs where that
// graph reads them. ONNX Runtime's CUDA EP (`enable_cuda_graph`) captures a session's
// kernels once per `gpu_graph_id` and replays them on the same device addresses, so a
// graphed call copies the loop's inputs into the graph's own fixed slots first and its
// output slot back after. Host code (no CUDA headers): the CPU tests check it, the CUDA
// backend (csrc/src/cuda/ort_cuda_backend.cpp) acts on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "w2sd/ort_models.h"

namespace w2sd {

using Shape = std::vector<int64_t>;

// A UNet call's float32 tensor as the loop hands it: where it is and its shape.
struct TensorRef {
  const void* data = nullptr;
  Shape shape;
  size_t bytes() const;
};

// A device-to-device copy on the lane's stream.
struct SlotCopy {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
};

class CudaGraphPlan {
 public:
  static constexpr int kNoGraph = -1;  // ONNX Runtime's gpu_graph_id for a launched call

  explicit CudaGraphPlan(int max_graphs);
  // The graph for a call whose inputs have these shapes: the one already assigned to them,
  // a new one while fewer than max_graphs exist, else kNoGraph.
  int graph_for(const std::vector<Shape>& input_shapes);
  int num_graphs() const { return static_cast<int>(graphs_.size()); }
  // The input shapes of graph `id`, in input order.
  const std::vector<Shape>& input_shapes(int id) const;

 private:
  int max_graphs_;
  std::vector<std::vector<Shape>> graphs_;
};

// Around a replay: each input into its slot (before), the output slot into the loop's
// buffer (after). An input already at its slot is not copied. Slots and tensors must
// agree in count; each slot holds its tensor's bytes (the plan's shapes).
struct SlotCopies {
  std::vector<SlotCopy> before;
  SlotCopy after;
};
SlotCopies slot_copies(const std::vector<TensorRef>& inputs, const std::vector<void*>& input_slots,
                       const TensorRef& output, void* output_slot);

// Whether a UNet session's CUDA EP options ask for graphs (`enable_cuda_graph` = 1/true).
bool wants_cuda_graph(const OptionList& cuda_options);

// The run-option entry that selects graph `id` ("gpu_graph_id").
constexpr const char* kGpuGraphIdKey = "gpu_graph_id";
std::string gpu_graph_id_value(int id);

// UNet input shapes each lane's UNet session captures a graph for, at most: a request
// size's guided and unguided batches (W2SD's two roles), two sizes.
constexpr int kMaxGraphsPerSession = 4;

}  // namespace w2sd
