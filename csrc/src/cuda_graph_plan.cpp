#include "w2sd/cuda_graph_plan.h"

#include <algorithm>

#include "w2sd/status.h"

namespace w2sd {

size_t TensorRef::bytes() const {
  size_t count = 1;
  for (int64_t d : shape) {
    W2SD_CHECK_ARG(d >= 0, "negative dimension in a UNet tensor shape");
    count *= static_cast<size_t>(d);
  }
  return count * sizeof(float);
}

CudaGraphPlan::CudaGraphPlan(int max_graphs) : max_graphs_(max_graphs) {
  W2SD_CHECK_ARG(max_graphs >= 0, "max_graphs must be >= 0");
}

int CudaGraphPlan::graph_for(const std::vector<Shape>& input_shapes) {
  const auto it = std::find(graphs_.begin(), graphs_.end(), input_shapes);
  if (it != graphs_.end()) return static_cast<int>(it - graphs_.begin());
  if (num_graphs() >= max_graphs_) return kNoGraph;
  graphs_.push_back(input_shapes);
  return num_graphs() - 1;
}

const std::vector<Shape>& CudaGraphPlan::input_shapes(int id) const {
  W2SD_CHECK_ARG(id >= 0 && id < num_graphs(), "CUDA graph ", id, " out of range");
  return graphs_[static_cast<size_t>(id)];
}

SlotCopies slot_copies(const std::vector<TensorRef>& inputs, const std::vector<void*>& input_slots,
                       const TensorRef& output, void* output_slot) {
  W2SD_CHECK_ARG(inputs.size() == input_slots.size(), inputs.size(), " UNet inputs but ",
                 input_slots.size(), " graph slots");
  SlotCopies copies;
  for (size_t i = 0; i < inputs.size(); ++i) {
    W2SD_CHECK_ARG(input_slots[i] != nullptr, "graph slot ", i, " is not allocated");
    if (inputs[i].data == input_slots[i]) continue;
    copies.before.push_back({input_slots[i], inputs[i].data, inputs[i].bytes()});
  }
  W2SD_CHECK_ARG(output_slot != nullptr, "the graph's output slot is not allocated");
  copies.after = {const_cast<void*>(output.data), output_slot, output.bytes()};
  return copies;
}

bool wants_cuda_graph(const OptionList& cuda_options) {
  bool on = false;
  for (const auto& kv : cuda_options) {  // the last one set wins, as in ONNX Runtime
    if (kv.first == "enable_cuda_graph") on = kv.second == "1" || kv.second == "true";
  }
  return on;
}

std::string gpu_graph_id_value(int id) { return std::to_string(id); }

}  // namespace w2sd
