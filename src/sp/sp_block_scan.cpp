// The sequence-parallel 2x2 block scan with autograd (seqpar/sp.h), sp_scan.cpp's scheme over the
// matrix summary kind: a slice's summary (M, E) with h_last = M h0 + E is a 2x2 matrix and a
// 2-vector per channel, which compose as the matrix states' (M, E) pairs do, so the one
// cross-rank scan (comm::rank_entering_state over comm::matrix_summary(), E as a (2, 1) column)
// carries them; nothing here is specific to the exchange.
//
// Forward on rank r: (M_r, E_r) = block_scan_summary(slice); the first rank in scan order folds
// h0 into E; the exclusive scan gives the state entering each rank; the local block scan
// finishes the slice; h_last is broadcast from the last rank in scan order.
// Backward, the mirror image: the adjoint leaving a slice is G_r + M_r^T (adjoint entering
// its end), G_r being the slice's adjoint with nothing entering, one summary over the slice of
// the transposed maps (one step behind) against grad_h; an exclusive scan of (M_r^T, G_r) in the
// opposite rank order gives each rank its entering adjoint, and one fused block_scan_backward
// finishes the slice. Summaries travel in the accumulation dtype (float64 for float32).
#include "seqpar/sp.h"

#include <torch/autograd.h>

#include "ops/block_scan_prepare.h"
#include "ops/kernel_params.h"
#include "seqpar/comm/c10d_communicator.h"
#include "ops/op_handles.h"
#include "sp/autograd_support.h"
#include "sp/slice_header.h"

namespace seqpar::sp {
namespace {

using ops::defined_or_null;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A with A[..., 0, 1] zeroed when lower_triangular (the kernels never read it; the ATen code
// here must not either).
at::Tensor effective_A(const at::Tensor& A, bool lower) {
  if (!lower) return A;
  at::Tensor z = A.clone();
  z.select(-2, 0).select(-1, 1).zero_();
  return z;
}

at::Tensor matvec(const at::Tensor& M, const at::Tensor& x) {
  return at::matmul(M, x.unsqueeze(-1)).squeeze(-1);
}

// The adjoint leaving a slice when nothing enters its end (in the accumulation dtype acc):
//   forward:  lam_{n-1} = g_{n-1}, lam_t = A_{t+1}^T lam_{t+1} + g_t, G = A_0^T lam_0
//   reverse:  the same with time flipped.
at::Tensor slice_adjoint(const at::Tensor& A, const at::Tensor& grad_h, bool reverse,
                         bool lower, const std::vector<int64_t>& state_shape,
                         at::ScalarType acc) {
  const int64_t n = A.size(1);
  if (!grad_h.defined() || n == 0) return at::zeros(state_shape, A.options().dtype(acc));
  const at::Tensor first_A = effective_A(reverse ? A.select(1, n - 1) : A.select(1, 0), lower);
  at::Tensor lam = (reverse ? grad_h.select(1, 0) : grad_h.select(1, n - 1)).to(acc);
  if (n > 1) {
    const at::Tensor tail = effective_A(reverse ? A.narrow(1, 0, n - 1) : A.narrow(1, 1, n - 1),
                                        lower);
    const at::Tensor head_g =
        (reverse ? grad_h.narrow(1, 1, n - 1) : grad_h.narrow(1, 0, n - 1)).to(A.scalar_type());
    auto [M, E] = ops::block_scan_summary_op().call(tail.transpose(-1, -2), head_g, !reverse,
                                                    false);
    lam = matvec(M.to(acc), lam) + E.to(acc);
  }
  return matvec(first_A.to(acc).transpose(-1, -2), lam);
}

class SpBlockScanFunction : public torch::autograd::Function<SpBlockScanFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& A, const at::Tensor& b,
                               const std::optional<at::Tensor>& h0_opt, bool reverse,
                               bool lower, std::shared_ptr<comm::Communicator> group,
                               comm::ExchangeAlgo algo) {
    comm::Communicator& g = *group;
    const at::Tensor h0 = h0_opt.has_value() ? *h0_opt : at::Tensor();
    const int P = g.size(), rank = g.rank();
    const int first_rank = reverse ? P - 1 : 0, last_rank = reverse ? 0 : P - 1;
    const at::ScalarType acc = ops::accumulation_dtype(A.scalar_type());
    const comm::Stream stream = stream_for(A);

    auto [M_in, E_in] = ops::block_scan_summary_op().call(A, b, reverse, lower);
    const at::Tensor M = M_in.to(acc).contiguous();
    at::Tensor E = E_in.to(acc);
    algo = comm::resolve_exchange_algo(g, comm::matrix_summary(), {M, E.unsqueeze(-1)}, algo);
    check_headers_agree("seqpar.sp_block_scan", g, b, reverse, algo);
    if (rank == first_rank && h0.defined()) E = matvec(M, h0.to(acc)) + E;
    const at::Tensor entering_acc = comm::rank_entering_state(
        g, comm::matrix_summary(), {M, E.unsqueeze(-1).contiguous()}, reverse, algo, stream);
    const at::Tensor entering =
        rank == first_rank ? h0 : entering_acc.squeeze(-1).to(A.scalar_type());
    auto [h, local_last] =
        ops::block_scan_op().call(A, b, defined_or_null(entering), reverse, lower);
    at::Tensor h_last = local_last.contiguous();
    if (P > 1) {
      if (rank != last_rank) h_last = at::empty_like(h_last);
      g.broadcast(comm::mutable_buffer_of(h_last), last_rank, stream);
    }
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["lower"] = lower;
    ctx->saved_data["algo"] = static_cast<int64_t>(algo);
    ctx->saved_data["has_h0"] = h0.defined();
    ctx->saved_data["group"] = c10::make_intrusive<CommunicatorHolder>(group);
    ctx->save_for_backward({A, h, entering, M});
    return {h, h_last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const bool lower = ctx->saved_data["lower"].toBool();
    const auto algo = static_cast<comm::ExchangeAlgo>(ctx->saved_data["algo"].toInt());
    auto holder = ctx->saved_data["group"].toCustomClass<CommunicatorHolder>();
    comm::Communicator& g = *holder->comm;
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &A = saved[0], &h = saved[1], &entering = saved[2], &M = saved[3];
    const int P = g.size(), rank = g.rank();
    const int first_rank = reverse ? P - 1 : 0, last_rank = reverse ? 0 : P - 1;
    const at::ScalarType acc = M.scalar_type();
    const comm::Stream stream = stream_for(A);
    std::vector<int64_t> state_shape = M.sizes().vec();
    state_shape.pop_back();

    at::Tensor ghl = grads[1].defined() ? grads[1].to(acc).contiguous().clone()
                                        : at::zeros(state_shape, M.options());
    if (P > 1) g.all_reduce_sum(comm::mutable_buffer_of(ghl), stream);

    const at::Tensor adjoint_M = M.transpose(-1, -2).contiguous();
    at::Tensor adjoint_E = slice_adjoint(A, grads[0], reverse, lower, state_shape, acc);
    if (rank == last_rank) adjoint_E = matvec(adjoint_M, ghl) + adjoint_E;
    const at::Tensor entering_adjoint =
        comm::rank_entering_state(g, comm::matrix_summary(),
                                  {adjoint_M, adjoint_E.unsqueeze(-1).contiguous()}, !reverse,
                                  algo, stream);
    const at::Tensor incoming =
        (rank == last_rank ? ghl : entering_adjoint.squeeze(-1)).to(A.scalar_type());
    auto [grad_A, grad_b, grad_entering] = ops::block_scan_backward_op().call(
        A, h, defined_or_null(entering), defined_or_null(grads[0]), incoming, reverse, lower);
    at::Tensor grad_h0;
    if (ctx->saved_data["has_h0"].toBool())
      grad_h0 = rank == first_rank ? grad_entering : at::zeros_like(grad_entering);
    return {grad_A, grad_b, grad_h0, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor> block_scan(const at::Tensor& A, const at::Tensor& b,
                                              const std::optional<at::Tensor>& h0,
                                              const BlockScanOptions& options,
                                              const std::shared_ptr<comm::Communicator>& group,
                                              const SpOptions& sp_options) {
  TORCH_CHECK(group != nullptr, "seqpar::sp::block_scan: argument 'group' is null");
  // The local op's checks, naming the argument, before anything is exchanged.
  ops::check_block_inputs("seqpar::sp::block_scan", A, b, "b", h0);
  auto out = SpBlockScanFunction::apply(A, b, h0, options.reverse, options.lower_triangular,
                                        group, sp_options.algo);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor> block_scan(const at::Tensor& A, const at::Tensor& b,
                                              const std::optional<at::Tensor>& h0,
                                              const BlockScanOptions& options,
                                              const std::string& group_name,
                                              const SpOptions& sp_options) {
  return block_scan(A, b, h0, options, comm::communicator_for_group(group_name), sp_options);
}

}  // namespace seqpar::sp
