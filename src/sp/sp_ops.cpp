// Registers the sequence-parallel ops with the seqpar library (schemas live next to their only
// implementation because they take a torch.distributed group by name, like functional
// collectives):
//   sp_scan(Tensor a, Tensor b, Tensor? h0, bool reverse, str group_name) -> (Tensor, Tensor)
//   sp_comm_check(str group_name) -> str
// sp_scan is CompositeImplicitAutograd: its body is an autograd::Function, so autograd, CPU and
// CUDA tensors all go through one implementation (src/sp/sp_scan.cpp).
// sp_comm_check runs closed-form checks of send/recv, all_gather, all_reduce and broadcast on
// the group (inputs derived from the rank, exact expected values, as nccl-tests verify) and
// returns a one-line report; it throws on the first wrong value. It is collective.
#include <torch/library.h>

#include <sstream>

#include "seqpar/comm/c10d_communicator.h"
#include "seqpar/sp.h"

namespace seqpar::sp {
namespace {

std::tuple<at::Tensor, at::Tensor> sp_scan_op(const at::Tensor& a, const at::Tensor& b,
                                              const std::optional<at::Tensor>& h0, bool reverse,
                                              c10::string_view group_name) {
  return scan(a, b, h0, reverse, std::string(group_name));
}

void expect_equal(double got, double want, const char* what, int rank, int64_t index) {
  TORCH_CHECK(got == want, "seqpar.sp_comm_check: ", what, " on rank ", rank, " element ", index,
              ": got ", got, ", expected ", want);
}

std::string sp_comm_check(c10::string_view group_name) {
  auto group = comm::communicator_for_group(std::string(group_name));
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

TORCH_LIBRARY_FRAGMENT(seqpar, m) {
  // Sequence-parallel scan over the torch.distributed group named group_name; see seqpar/sp.h
  // for which rank's h0 is read and the gradient convention.
  m.def("sp_scan(Tensor a, Tensor b, Tensor? h0, bool reverse, str group_name) -> (Tensor h, Tensor h_last)");
  m.def("sp_comm_check(str group_name) -> str", &sp_comm_check);
}

TORCH_LIBRARY_IMPL(seqpar, CompositeImplicitAutograd, m) { m.impl("sp_scan", &sp_scan_op); }

}  // namespace seqpar::sp
