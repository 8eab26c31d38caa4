#include "openvino_models.h"

#include <filesystem>
#include <mutex>

#include "w2sd/page_trimmer.h"
#include "w2sd/status.h"
#include "w2sd/unet_shape.h"

namespace w2sd::ov {
namespace {

constexpr const char* kDevice = "CPU";
constexpr const char* kLoraScaleInput = "lora_scale";

// Owns an ov_model_t.
struct ModelHandle {
  ov_model_t* p = nullptr;
  ~ModelHandle() {
    if (!p) return;
    std::lock_guard<std::mutex> unmapping(file_mapping_mutex());  // page_trimmer.h
    api().ov_model_free(p);
  }
};

bool model_has_input(const ov_model_t* model, const std::string& name) {
  ov_output_const_port_t* port = nullptr;
  if (api().ov_model_const_input_by_name(model, name.c_str(), &port) != OK) return false;
  api().ov_output_const_port_free(port);
  return true;
}

bool model_has_output(const ov_model_t* model, const std::string& name) {
  ov_output_const_port_t* port = nullptr;
  if (api().ov_model_const_output_by_name(model, name.c_str(), &port) != OK) return false;
  api().ov_output_const_port_free(port);
  return true;
}

// Fixes the named inputs to static shapes.
void reshape(ov_model_t* model,
             const std::vector<std::pair<std::string, std::vector<int64_t>>>& dims,
             const char* what) {
  std::vector<const char*> names;
  std::vector<ov_partial_shape_t> shapes(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    names.push_back(dims[i].first.c_str());
    check(api().ov_partial_shape_create_static(static_cast<int64_t>(dims[i].second.size()),
                                               dims[i].second.data(), &shapes[i]),
          what);
  }
  const ov_status_e status =
      api().ov_model_reshape(model, names.data(), shapes.data(), dims.size());
  for (auto& s : shapes) api().ov_partial_shape_free(&s);
  check(status, what);
}

// A tensor wrapping host memory (OpenVINO does not copy it); freed with the wrapper.
struct HostPtrTensor {
  ov_tensor_t* p = nullptr;
  HostPtrTensor(ov_element_type_e type, const void* data, const std::vector<int64_t>& dims,
                const char* what) {
    ov_shape_t shape{};
    check(api().ov_shape_create(static_cast<int64_t>(dims.size()), dims.data(), &shape), what);
    const ov_status_e status =
        api().ov_tensor_create_from_host_ptr(type, shape, const_cast<void*>(data), &p);
    api().ov_shape_free(&shape);
    check(status, what);
  }
  ~HostPtrTensor() {
    if (p) api().ov_tensor_free(p);
  }
};

}  // namespace

ov_core_t* shared_core() {
  static std::once_flag once;
  static ov_core_t* core = nullptr;
  std::call_once(once, [] { check(api().ov_core_create(&core), "OpenVINO core"); });
  return core;
}

CompiledModel::CompiledModel(
    const std::string& path, const OrtModelNames& names, const OptionList& properties,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& static_dims,
    bool optional_lora_scale, const char* what)
    : what_(what), inputs_(names.inputs), outputs_(names.outputs) {
  if (!std::filesystem::is_regular_file(path)) {
    detail::throw_error(ErrorCode::kNotFound, what, ": model file '", path, "' does not exist");
  }
  ModelHandle model;
  check(api().ov_core_read_model(shared_core(), path.c_str(), nullptr, &model.p), what);
  for (const auto& name : inputs_) {
    W2SD_CHECK_ARG(model_has_input(model.p, name), what, ": model has no input '", name, "'");
  }
  for (const auto& name : outputs_) {
    W2SD_CHECK_ARG(model_has_output(model.p, name), what, ": model has no output '", name, "'");
  }
  if (optional_lora_scale && model_has_input(model.p, kLoraScaleInput)) {
    inputs_.emplace_back(kLoraScaleInput);
    has_lora_scale_ = true;
  }
  if (!static_dims.empty()) reshape(model.p, static_dims, what);
  std::vector<ov_property_t> props;
  for (const auto& [key, value] : properties) props.push_back({key.c_str(), value.c_str()});
  check(api().ov_core_compile_model_props(shared_core(), model.p, kDevice, props.size(),
                                          props.empty() ? nullptr : props.data(), &compiled_),
        what);
  const ov_status_e status = api().ov_compiled_model_create_infer_request(compiled_, &request_);
  if (status != OK) {
    {
      std::lock_guard<std::mutex> unmapping(file_mapping_mutex());  // page_trimmer.h
      api().ov_compiled_model_free(compiled_);
    }
    check(status, what);
  }
}

CompiledModel::~CompiledModel() {
  std::lock_guard<std::mutex> unmapping(file_mapping_mutex());  // page_trimmer.h
  api().ov_infer_request_free(request_);
  api().ov_compiled_model_free(compiled_);
}

void CompiledModel::set_input(size_t index, ov_element_type_e type, const void* data,
                              const std::vector<int64_t>& shape) {
  HostPtrTensor t(type, data, shape, what_);
  check(api().ov_infer_request_set_tensor(request_, inputs_.at(index).c_str(), t.p), what_);
}

void CompiledModel::set_output(size_t index, float* data, const std::vector<int64_t>& shape) {
  HostPtrTensor t(F32, data, shape, what_);
  check(api().ov_infer_request_set_tensor(request_, outputs_.at(index).c_str(), t.p), what_);
}

void CompiledModel::infer() { check(api().ov_infer_request_infer(request_), what_); }

HostTensor CompiledModel::output(size_t index) const {
  ov_tensor_t* t = nullptr;
  check(api().ov_infer_request_get_tensor(request_, outputs_.at(index).c_str(), &t), what_);
  HostTensor out;
  ov_shape_t shape{};
  size_t size = 0;
  void* data = nullptr;
  ov_status_e status = api().ov_tensor_get_shape(t, &shape);
  if (status == OK) {
    out.shape.assign(shape.dims, shape.dims + shape.rank);
    api().ov_shape_free(&shape);
    status = api().ov_tensor_get_size(t, &size);
  }
  if (status == OK) status = api().ov_tensor_data(t, &data);
  if (status == OK) {
    const float* f = static_cast<const float*>(data);
    out.data.assign(f, f + size);
  }
  api().ov_tensor_free(t);
  check(status, what_);
  return out;
}

void run_unet(CompiledModel& m, const UnetInputs& in, float* out) {
  const size_t n_base = m.inputs().size() - (m.has_lora_scale() ? 1 : 0);
  check_unet_inputs(n_base, in);
  const float timestep = in.timestep;
  const float lora_scale = in.lora_scale;
  const std::vector<int64_t> sample{in.batch, in.channels, in.height, in.width};
  const std::vector<std::vector<int64_t>> shapes = {sample,
                                                    {1},
                                                    {in.batch, in.text_len, in.text_dim},
                                                    {in.batch, in.pooled_dim},
                                                    {in.batch, in.time_ids_dim}};
  const float* data[5] = {in.sample, &timestep, in.text, in.text_embeds, in.time_ids};
  for (size_t i = 0; i < n_base; ++i) m.set_input(i, F32, data[i], shapes[i]);
  if (m.has_lora_scale()) m.set_input(n_base, F32, &lora_scale, {1});
  m.set_output(0, out, sample);
  m.infer();
}

std::vector<HostTensor> encode_text(CompiledModel& m, const int64_t* input_ids, int64_t batch,
                                    int64_t length) {
  m.set_input(0, I64, input_ids, {batch, length});
  m.infer();
  std::vector<HostTensor> out;
  for (size_t i = 0; i < m.outputs().size(); ++i) out.push_back(m.output(i));
  return out;
}

HostTensor decode(CompiledModel& m, const float* latents, int64_t batch, int64_t channels,
                  int64_t height, int64_t width) {
  m.set_input(0, F32, latents, {batch, channels, height, width});
  m.infer();
  return m.output(0);
}

}  // namespace w2sd::ov
