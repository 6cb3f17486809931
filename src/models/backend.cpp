// The two SequenceBackends: one rank (seqpar::scan) and a sequence-parallel group
// (seqpar::sp::scan). The models never see which one they run on.
#include <seqpar/comm/communicator.h>
#include <seqpar/models/manifold_scan.h>
#include <seqpar/scan.h>
#include <seqpar/sp.h>

namespace seqpar::models {

SequenceBackend local_backend() {
  SequenceBackend backend;
  backend.scan = [](const at::Tensor& a, const at::Tensor& b,
                    const std::optional<at::Tensor>& h0) {
    return seqpar::scan(a, b, h0, /*reverse=*/false);
  };
  backend.previous_last = [](const at::Tensor&) -> std::optional<at::Tensor> {
    return std::nullopt;
  };
  return backend;
}

SequenceBackend sp_backend(std::shared_ptr<comm::Communicator> group) {
  TORCH_CHECK(group, "sp_backend: group is null");
  SequenceBackend backend;
  backend.scan = [group](const at::Tensor& a, const at::Tensor& b,
                         const std::optional<at::Tensor>& h0) {
    return seqpar::sp::scan(a, b, h0, /*reverse=*/false, group);
  };
  // An all-gather of a few floats: no tag shared with other point-to-point traffic, and the
  // cost is one small collective per layer per step.
  backend.previous_last = [group](const at::Tensor& last) -> std::optional<at::Tensor> {
    auto mine = last.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    auto all = torch::empty({group->size(), mine.numel()}, mine.options());
    group->all_gather(
        comm::host_buffer(mine.data_ptr(), mine.numel() * sizeof(float), comm::DataType::kFloat32),
        comm::host_buffer(all.data_ptr(), all.numel() * sizeof(float), comm::DataType::kFloat32));
    if (group->rank() == 0) return std::nullopt;
    return all[group->rank() - 1].view(last.sizes()).to(last.options());
  };
  return backend;
}

}  // namespace seqpar::models
