#include "w2sd/device_workspace.h"

namespace w2sd {
namespace {

size_t round_up(size_t n) {
  return (n + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment;
}

}  // namespace

WorkspaceLayout plan_workspace(const std::vector<size_t>& sizes) {
  WorkspaceLayout layout;
  layout.offsets.reserve(sizes.size());
  for (size_t bytes : sizes) {
    layout.offsets.push_back(layout.bytes);
    layout.bytes += round_up(bytes);
  }
  return layout;
}

std::vector<float> slot_table(const std::vector<float>& values) {
  std::vector<float> table(values.size() * kSlotFloats, 0.0f);
  for (size_t i = 0; i < values.size(); ++i) table[i * kSlotFloats] = values[i];
  return table;
}

size_t grown_capacity(size_t capacity, size_t needed) {
  if (needed <= capacity) return capacity;
  return round_up(needed + needed / 4);
}

}  // namespace w2sd
