// The two SequenceBackends: one rank (seqpar::scan) and a sequence-parallel group
// (seqpar::sp::scan, seqpar::sp::block_scan). The models never see which one they run on.
#include <seqpar/block_scan.h>
#include <seqpar/comm/communicator.h>
#include <seqpar/matrix_state.h>
#include <seqpar/models/manifold_scan.h>
#include <seqpar/previous_steps.h>
#include <seqpar/psm.h>
#include <seqpar/scan.h>
#include <seqpar/sp.h>

namespace seqpar::models {

SequenceBackend local_backend() {
  SequenceBackend backend;
  backend.scan = [](const at::Tensor& a, const at::Tensor& b, const std::optional<at::Tensor>& h0,
                    const Documents& cu_seqlens) {
    ScanOptions options;
    options.cu_seqlens = cu_seqlens;
    return seqpar::scan(a, b, h0, options);
  };
  backend.block_scan = [](const at::Tensor& A, const at::Tensor& b,
                          const std::optional<at::Tensor>& h0, bool lower_triangular) {
    BlockScanOptions options;
    options.lower_triangular = lower_triangular;
    return seqpar::block_scan(A, b, h0, options);
  };
  backend.chunk_gla = [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& g, const std::optional<at::Tensor>& h0, int64_t chunk,
                         const Documents& cu_seqlens) {
    return seqpar::chunk_gla(q, k, v, g, std::nullopt, h0, chunk, cu_seqlens);
  };
  backend.chunk_gated_delta_rule = [](const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v, const at::Tensor& g,
                                      const at::Tensor& beta, const std::optional<at::Tensor>& h0,
                                      int64_t chunk, const Documents& cu_seqlens) {
    return seqpar::chunk_gated_delta_rule(q, k, v, g, beta, std::nullopt, h0, chunk, cu_seqlens);
  };
  backend.previous_steps = [](const at::Tensor& x, int64_t width,
                              const std::optional<at::Tensor>& initial,
                              const Documents& cu_seqlens) {
    return seqpar::previous_steps(x, width, initial, cu_seqlens);
  };
  backend.local_bounds = [](const at::Tensor& cu_seqlens, int64_t) { return cu_seqlens; };
  backend.psm_scan = [](const at::Tensor& chunks, const psm::Aggregate& agg, bool) {
    return psm::static_scan(chunks, agg);
  };
  return backend;
}

SequenceBackend sp_backend(std::shared_ptr<comm::Communicator> group, comm::ExchangeAlgo algo) {
  TORCH_CHECK(group, "sp_backend: group is null");
  sp::SpOptions options;
  options.algo = algo;
  SequenceBackend backend;
  backend.sequence_parallel = true;
  backend.scan = [group, options](const at::Tensor& a, const at::Tensor& b,
                                  const std::optional<at::Tensor>& h0,
                                  const Documents& cu_seqlens) {
    return seqpar::sp::scan(a, b, h0, /*reverse=*/false, group, options, cu_seqlens);
  };
  backend.block_scan = [group, options](const at::Tensor& A, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0,
                                        bool lower_triangular) {
    BlockScanOptions block;
    block.lower_triangular = lower_triangular;
    return seqpar::sp::block_scan(A, b, h0, block, group, options);
  };
  backend.chunk_gla = [group, options](const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, const at::Tensor& g,
                                       const std::optional<at::Tensor>& h0, int64_t chunk,
                                       const Documents& cu_seqlens) {
    return seqpar::sp::chunk_gla(q, k, v, g, std::nullopt, h0, chunk, group, options,
                                 cu_seqlens);
  };
  backend.chunk_gated_delta_rule = [group, options](const at::Tensor& q, const at::Tensor& k,
                                                    const at::Tensor& v, const at::Tensor& g,
                                                    const at::Tensor& beta,
                                                    const std::optional<at::Tensor>& h0,
                                                    int64_t chunk, const Documents& cu_seqlens) {
    return seqpar::sp::chunk_gated_delta_rule(q, k, v, g, beta, std::nullopt, h0, chunk, group,
                                              options, cu_seqlens);
  };
  backend.previous_steps = [group, options](const at::Tensor& x, int64_t width,
                                            const std::optional<at::Tensor>& initial,
                                            const Documents& cu_seqlens) {
    return seqpar::sp::previous_steps(x, width, initial, group, options, cu_seqlens);
  };
  backend.local_bounds = [group](const at::Tensor& cu_seqlens, int64_t local_time) {
    return seqpar::sp::packed_bounds(cu_seqlens, local_time, group);
  };
  backend.psm_scan = [group](const at::Tensor& chunks, const psm::Aggregate& agg,
                             bool partial_last_chunk) {
    return psm::sp_static_scan(chunks, agg, group, partial_last_chunk);
  };
  return backend;
}

}  // namespace seqpar::models
