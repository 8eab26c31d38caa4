// w2sd._core.testing: entry points only the tests use (the per-element math as the CUDA
// kernels compute it, the device loop's layout and batching policy, the OpenVINO helpers,
// the GPU session options, the lane pool, and the error route).
#include <pybind11/stl.h>

#include <cstdint>
#include <new>
#include <stdexcept>
#include <tuple>

#include "binding.h"
#include "w2sd/cuda_graph_plan.h"
#include "w2sd/cuda_support.h"
#include "w2sd/ddim_math.h"
#include "w2sd/device_workspace.h"
#include "w2sd/gpu_options.h"
#include "w2sd/guided_denoiser.h"
#include "w2sd/lane_scheduler.h"
#include "w2sd/page_trimmer.h"
#include "w2sd/status.h"

namespace w2sd::python {
namespace {

FloatArray like(const FloatArray& x) {
  return FloatArray(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
}

std::vector<float> values(const FloatArray& a) { return {a.data(), a.data() + a.size()}; }

FloatArray guided_update(const FloatArray& e_uncond, const FloatArray& e_cond, float guidance,
                         const FloatArray& x, float a, float a_next,
                         const std::string& prediction) {
  W2SD_CHECK_ARG(e_uncond.size() == x.size() && e_cond.size() == x.size(),
                 "e_uncond, e_cond and x must have the same size");
  const DdimCoeffs c = make_coeffs(a, a_next);
  const PredictionType p = parse_prediction_type(prediction);
  FloatArray out = like(x);
  for (py::ssize_t k = 0; k < x.size(); ++k) {
    out.mutable_data()[k] =
        guided_ddim_update(e_uncond.data()[k], e_cond.data()[k], guidance, x.data()[k], c, p);
  }
  return out;
}

FloatArray combine(const FloatArray& e_uncond, const FloatArray& e_cond, float guidance) {
  W2SD_CHECK_ARG(e_uncond.size() == e_cond.size(), "e_uncond and e_cond sizes differ");
  FloatArray out = like(e_cond);
  for (py::ssize_t k = 0; k < e_cond.size(); ++k) {
    out.mutable_data()[k] = cfg_combine(e_uncond.data()[k], e_cond.data()[k], guidance);
  }
  return out;
}

FloatArray device_update(const FloatArray& unet_out, bool guided, float guidance,
                         const FloatArray& x, float a, float a_next, const std::string& prediction,
                         const std::string& unet_dtype, int device) {
  const DdimCoeffs c = make_coeffs(a, a_next);
  const PredictionType p = parse_prediction_type(prediction);
  std::vector<float> out;
  {
    py::gil_scoped_release release;
    out = cuda_guided_ddim_update(device, values(unet_out), unet_dtype, guided, guidance, values(x),
                                  c, p);
  }
  FloatArray result = like(x);
  std::copy(out.begin(), out.end(), result.mutable_data());
  return result;
}

py::bytes device_pack(const FloatArray& x, const std::string& dtype, bool twice, int device) {
  std::vector<uint8_t> out;
  {
    py::gil_scoped_release release;
    out = cuda_pack_sample(device, values(x), dtype, twice);
  }
  return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

// Throws what `kind` names, for the tests of the one error route.
void raise_error(const std::string& kind, const std::string& param) {
  if (kind == "out_of_range") throw std::out_of_range("index out of range");
  if (kind == "bad_alloc") throw std::bad_alloc();
  if (kind == "not_an_exception") throw 42;
  for (ErrorCode code : {ErrorCode::kInvalidArgument, ErrorCode::kNotFound, ErrorCode::kBackend,
                         ErrorCode::kCancelled, ErrorCode::kInternal}) {
    if (kind == error_code_name(code)) throw W2sdError(code, "raised for a test", param);
  }
  W2SD_CHECK_PARAM(false, "kind", "kind: unknown '", kind, "'");
}

void bind_math(py::module_& m) {
  m.def("guided_ddim_update", &guided_update, py::arg("e_uncond"), py::arg("e_cond"),
        py::arg("guidance"), py::arg("x"), py::arg("a"), py::arg("a_next"),
        py::arg("prediction_type"),
        "The fused guidance + DDIM update per element, as the CUDA kernel computes it.");
  m.def("cfg_combine", &combine, py::arg("e_uncond"), py::arg("e_cond"), py::arg("guidance"));
  m.def("cuda_guided_ddim_update", &device_update, py::arg("unet_out"), py::arg("guided"),
        py::arg("guidance"), py::arg("x"), py::arg("a"), py::arg("a_next"),
        py::arg("prediction_type"), py::arg("unet_dtype") = "float32", py::arg("device") = 0,
        "The device loop's update kernel once on the GPU: unet_out is [e_u; e_c] (guided) or e.");
  m.def("cuda_pack_sample", &device_pack, py::arg("x"), py::arg("dtype"), py::arg("twice"),
        py::arg("device") = 0, "The UNet sample input the device loop packs from x, as raw bytes.");
}

void bind_device_layout(py::module_& m) {
  m.def(
      "plan_workspace",
      [](const std::vector<size_t>& sizes) {
        const WorkspaceLayout l = plan_workspace(sizes);
        return py::make_tuple(l.offsets, l.bytes);
      },
      py::arg("sizes"),
      "The device loop's buffer layout: (byte offsets, total bytes) for these sizes.");
  m.def("slot_table", &slot_table, py::arg("values"),
        "A device slot table's host image: values[i] at float index i * SLOT_FLOATS.");
  m.def("grown_capacity", &grown_capacity, py::arg("capacity"), py::arg("needed"));
  m.def("doubled_batch", &doubled_batch, py::arg("guided"),
        "Per role: whether the device loop runs its UNet calls on the doubled batch.");
  m.attr("DEVICE_ALIGNMENT") = kDeviceAlignment;
  m.attr("SLOT_FLOATS") = kSlotFloats;
}

void bind_backend_helpers(py::module_& m) {
  m.def("reshape_input_option", &reshape_input_option, py::arg("names"), py::arg("shape"),
        "How unet_sessions names a UNet's inputs `names` fixed to `shape`.");
  m.def(
      "trim_mapped_files",
      [](const std::vector<std::string>& dirs) {
        py::gil_scoped_release release;
        return trim_mapped_files(dirs);
      },
      py::arg("dirs"),
      "Drop the resident pages of read-only file mappings under these folders (the "
      "OpenVINO backend's weights); returns the bytes advised.");
  m.def(
      "with_file_mappings_freed",
      [](const py::function& during) {
        std::unique_lock<std::mutex> unmapping(file_mapping_mutex(), std::defer_lock);
        {
          py::gil_scoped_release release;  // a trimming pass may hold it meanwhile
          unmapping.lock();
        }
        during();
      },
      py::arg("during"),
      "Call `during` holding the lock the backend holds while it frees OpenVINO models "
      "(what may unmap their weights): no trimming pass runs meanwhile.");
  m.def(
      "probe_gpu_provider",
      [](const std::string& provider, int device_id) {
        py::gil_scoped_release release;
        return probe_gpu_provider(provider, device_id);
      },
      py::arg("provider"), py::arg("device_id") = 0,
      "Append the 'cuda' or 'tensorrt' execution provider to a session's options: '' if it "
      "loads here, else ONNX Runtime's reason (load_ort_library first).");
  m.def(
      "gpu_provider_options",
      [](const std::string& provider, int device_id, const OptionList& common,
         const OptionList& model) {
        W2SD_CHECK_ARG(provider == "cuda" || provider == "tensorrt",
                       "provider: 'cuda' or 'tensorrt'");
        if (provider == "cuda") {
          return cuda_provider_options(device_id, merge_options(common, model));
        }
        return tensorrt_provider_options(device_id, common, model);
      },
      py::arg("provider"), py::arg("device_id"), py::arg("common"), py::arg("model"),
      "The option key/value pairs a GPU session of this provider is given, in order.");
  m.attr("GPU_INTRA_OP_THREADS") = kGpuIntraOpThreads;
}

// The CUDA backend's graph plan on plain integers for addresses (never dereferenced).
void bind_cuda_graph_plan(py::module_& m) {
  m.def(
      "cuda_graph_ids",
      [](int max_graphs, const std::vector<std::vector<Shape>>& calls) {
        CudaGraphPlan plan(max_graphs);
        std::vector<int> ids;
        for (const auto& shapes : calls) ids.push_back(plan.graph_for(shapes));
        return ids;
      },
      py::arg("max_graphs"), py::arg("calls"),
      "The gpu_graph_id each UNet call (its input shapes) gets from one session's plan, in "
      "call order (-1: launched).");
  using Addressed = std::pair<uintptr_t, Shape>;
  using Copy = std::tuple<uintptr_t, uintptr_t, size_t>;
  m.def(
      "cuda_graph_slot_copies",
      [](const std::vector<Addressed>& inputs, const std::vector<uintptr_t>& slots,
         const Addressed& output, uintptr_t output_slot) {
        std::vector<TensorRef> in;
        for (const auto& a : inputs)
          in.push_back({reinterpret_cast<const void*>(a.first), a.second});
        std::vector<void*> s;
        for (uintptr_t p : slots) s.push_back(reinterpret_cast<void*>(p));
        const SlotCopies c =
            slot_copies(in, s, {reinterpret_cast<const void*>(output.first), output.second},
                        reinterpret_cast<void*>(output_slot));
        auto as_tuple = [](const SlotCopy& x) {
          return Copy{reinterpret_cast<uintptr_t>(x.dst), reinterpret_cast<uintptr_t>(x.src),
                      x.bytes};
        };
        std::vector<Copy> before;
        for (const auto& x : c.before) before.push_back(as_tuple(x));
        return std::make_pair(before, as_tuple(c.after));
      },
      py::arg("inputs"), py::arg("slots"), py::arg("output"), py::arg("output_slot"),
      "The (dst, src, bytes) copies around one graph replay: inputs into slots, then the "
      "output slot back.");
  m.def("wants_cuda_graph", &wants_cuda_graph, py::arg("cuda_options"),
        "Whether a UNet session's CUDA EP options ask for CUDA graphs.");
  m.attr("MAX_CUDA_GRAPHS_PER_SESSION") = kMaxGraphsPerSession;
}

}  // namespace

void bind_testing(py::module_& m) {
  bind_math(m);
  bind_device_layout(m);
  bind_backend_helpers(m);
  bind_cuda_graph_plan(m);
  py::class_<LanePool>(m, "LanePool", "Lanes checked out one caller at a time.")
      .def(py::init<int>(), py::arg("lanes"))
      .def("acquire", &LanePool::acquire, py::call_guard<py::gil_scoped_release>())
      .def("release", &LanePool::release, py::arg("lane"))
      .def_property_readonly("size", &LanePool::size)
      .def_property_readonly("in_use", &LanePool::in_use);
  m.def("raise_error", &raise_error, py::arg("kind"), py::arg("param") = "",
        "Throw a C++ exception: a W2sdError of ErrorCode `kind` ('invalid_argument', ...) with "
        "`param`, or 'out_of_range', 'bad_alloc', 'not_an_exception' (throw 42).");
}

}  // namespace w2sd::python
