// The sequence-parallel ops' registrations (their schemas are declared with every other one in
// src/ops/library.cpp): each takes a torch.distributed group by name, like functional
// collectives, and the exchange algorithm by name (`algo`, seqpar/comm/exchange_algo.h), and
// calls the C++ API of seqpar/sp.h. They are CompositeImplicitAutograd: their bodies are
// autograd::Functions, so autograd, CPU and CUDA tensors all go through one implementation.
// sp_comm_check runs closed-form checks of send/recv, all_gather, all_reduce and broadcast on
// the group (inputs derived from the rank, exact expected values, as nccl-tests verify) and
// returns a one-line report; it throws on the first wrong value. It is collective.
#include <torch/library.h>

#include <sstream>
#include <stdexcept>

#include "seqpar/comm/c10d_communicator.h"
#include "seqpar/sp.h"
#include "sp/packed_slice.h"

namespace seqpar::sp {
namespace {

std::shared_ptr<comm::Communicator> group_named(c10::string_view group_name) {
  return comm::communicator_for_group(std::string(group_name));
}

SpOptions options_for(c10::string_view algo) {
  SpOptions options;
  try {
    options.algo = comm::parse_exchange_algo(std::string(algo));
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, "argument 'algo': ", e.what());
  }
  return options;
}

std::tuple<at::Tensor, at::Tensor> sp_scan_op(const at::Tensor& a, const at::Tensor& b,
                                              const std::optional<at::Tensor>& h0, bool reverse,
                                              c10::string_view group_name,
                                              c10::string_view algo,
                                              const std::optional<at::Tensor>& cu_seqlens) {
  return scan(a, b, h0, reverse, group_named(group_name), options_for(algo), cu_seqlens);
}

std::tuple<at::Tensor, at::Tensor> sp_block_scan_op(const at::Tensor& A, const at::Tensor& b,
                                                    const std::optional<at::Tensor>& h0,
                                                    bool reverse, c10::string_view group_name,
                                                    c10::string_view algo, bool lower_triangular) {
  BlockScanOptions options;
  options.reverse = reverse;
  options.lower_triangular = lower_triangular;
  return block_scan(A, b, h0, options, group_named(group_name), options_for(algo));
}

std::tuple<at::Tensor, at::Tensor> sp_chunk_gla_op(const at::Tensor& q, const at::Tensor& k,
                                                   const at::Tensor& v, const at::Tensor& g,
                                                   std::optional<double> scale,
                                                   const std::optional<at::Tensor>& initial_state,
                                                   int64_t chunk_size,
                                                   c10::string_view group_name,
                                                   c10::string_view algo,
                                                   const std::optional<at::Tensor>& cu_seqlens) {
  return chunk_gla(q, k, v, g, scale, initial_state, chunk_size, group_named(group_name),
                   options_for(algo), cu_seqlens);
}

std::tuple<at::Tensor, at::Tensor> sp_chunk_gated_delta_rule_op(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    c10::string_view group_name, c10::string_view algo,
    const std::optional<at::Tensor>& cu_seqlens) {
  return chunk_gated_delta_rule(q, k, v, g, beta, scale, initial_state, chunk_size,
                                group_named(group_name), options_for(algo), cu_seqlens);
}

std::tuple<at::Tensor, at::Tensor> sp_chunk_kda_op(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const at::Tensor& beta, std::optional<double> scale,
    const std::optional<at::Tensor>& initial_state, int64_t chunk_size,
    c10::string_view group_name, c10::string_view algo,
    const std::optional<at::Tensor>& cu_seqlens) {
  return chunk_kda(q, k, v, g, beta, scale, initial_state, chunk_size, group_named(group_name),
                   options_for(algo), cu_seqlens);
}

std::tuple<at::Tensor, at::Tensor> sp_chunk_gated_delta_product_op(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& g, const at::Tensor& beta, int64_t num_householder,
    std::optional<double> scale, const std::optional<at::Tensor>& initial_state,
    int64_t chunk_size, c10::string_view group_name, c10::string_view algo,
    const std::optional<at::Tensor>& cu_seqlens) {
  return chunk_gated_delta_product(q, k, v, g, beta, num_householder, scale, initial_state,
                                   chunk_size, group_named(group_name), options_for(algo),
                                   cu_seqlens);
}

std::tuple<at::Tensor, at::Tensor> sp_previous_steps_op(const at::Tensor& x, int64_t width,
                                                        const std::optional<at::Tensor>& initial,
                                                        c10::string_view group_name,
                                                        c10::string_view algo,
                                                        const std::optional<at::Tensor>& cu_seqlens) {
  return previous_steps(x, width, initial, group_named(group_name), options_for(algo),
                        cu_seqlens);
}

at::Tensor sp_packed_bounds_op(const at::Tensor& cu_seqlens, int64_t local_time,
                               c10::string_view group_name) {
  return packed_bounds(cu_seqlens, local_time, group_named(group_name));
}

void expect_equal(double got, double want, const char* what, int rank, int64_t index) {
  TORCH_CHECK(got == want, "seqpar.sp_comm_check: ", what, " on rank ", rank, " element ", index,
              ": got ", got, ", expected ", want);
}

std::string sp_comm_check(c10::string_view group_name) {
  auto group = group_named(group_name);
  const int P = group->size(), r = group->rank();
  constexpr int64_t n = 257;  // odd, so no size is a power of two by accident
  std::vector<double> mine(n), got(n);
  for (int64_t i = 0; i < n; ++i) mine[i] = 1000.0 * r + static_cast<double>(i);
  auto buf = [](std::vector<double>& v) {
    return comm::host_buffer(v.data(), v.size() * sizeof(double), comm::DataType::kFloat64);
  };
  // Ring shift: receive the left neighbour's values.
  group->send_recv(buf(mine), (r + 1) % P, buf(got), (r + P - 1) % P, /*tag=*/11);
  for (int64_t i = 0; i < n; ++i)
    expect_equal(got[i], 1000.0 * ((r + P - 1) % P) + i, "send_recv", r, i);
  // all_gather: block q holds rank q's values.
  std::vector<double> all(static_cast<std::size_t>(n * P));
  group->all_gather(buf(mine), buf(all));
  for (int q = 0; q < P; ++q)
    for (int64_t i = 0; i < n; ++i)
      expect_equal(all[q * n + i], 1000.0 * q + i, "all_gather", r, q * n + i);
  // all_reduce_sum of (r+1)*(i+1): (i+1)*P(P+1)/2, exact in float64.
  std::vector<double> sum(n);
  for (int64_t i = 0; i < n; ++i) sum[i] = (r + 1.0) * (i + 1.0);
  group->all_reduce_sum(buf(sum));
  for (int64_t i = 0; i < n; ++i)
    expect_equal(sum[i], (i + 1.0) * P * (P + 1) / 2.0, "all_reduce_sum", r, i);
  // broadcast from every root.
  for (int root = 0; root < P; ++root) {
    std::vector<double> v(n, -1.0);
    if (r == root) v = mine;
    group->broadcast(buf(v), root);
    for (int64_t i = 0; i < n; ++i) expect_equal(v[i], 1000.0 * root + i, "broadcast", r, i);
  }
  group->barrier();
  std::ostringstream os;
  os << "ok: " << group->backend_name() << " rank " << r << " of " << P;
  return os.str();
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, CompositeImplicitAutograd, m) {
  m.impl("sp_scan", &sp_scan_op);
  m.impl("sp_block_scan", &sp_block_scan_op);
  m.impl("sp_chunk_gla", &sp_chunk_gla_op);
  m.impl("sp_chunk_gated_delta_rule", &sp_chunk_gated_delta_rule_op);
  m.impl("sp_chunk_gated_delta_product", &sp_chunk_gated_delta_product_op);
  m.impl("sp_chunk_kda", &sp_chunk_kda_op);
  m.impl("sp_previous_steps", &sp_previous_steps_op);
  m.impl("sp_packed_bounds", &sp_packed_bounds_op);
  m.impl("sp_comm_check", &sp_comm_check);
}

}  // namespace seqpar::sp
