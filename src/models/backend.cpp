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
  return backend;
}

SequenceBackend sp_backend(std::shared_ptr<comm::Communicator> group) {
  TORCH_CHECK(group, "sp_backend: group is null");
  SequenceBackend backend;
  backend.scan = [group](const at::Tensor& a, const at::Tensor& b,
                         const std::optional<at::Tensor>& h0) {
    return seqpar::sp::scan(a, b, h0, /*reverse=*/false, group);
  };
  return backend;
}

}  // namespace seqpar::models
