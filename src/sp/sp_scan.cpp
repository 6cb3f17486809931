// The sequence-parallel scan with autograd (seqpar/sp.h; docs/design.md section 2).
//
// Forward, on rank r of P (scan order = rank order, reversed for reverse=true):
//   (A_r, B_r) = scan_summary(slice); the first rank in scan order folds h0 into its summary,
//   B_first <- A_first*h0 + B_first, so that B(E_r) of the exclusive scan *is* the state H_r
//   entering rank r and no rank but the first ever needs h0. Then the local scan from H_r, and
//   h_last broadcast from the last rank in scan order.
// Backward is the mirror image: the adjoint enters each slice from its end. The adjoint leaving
// a slice (its grad_h0) is linear in the adjoint entering it, dH_r = conj(A_r)*dH_next + G_r,
// where G_r is the slice's adjoint with nothing entering: one summary over the slice (a scan of
// the shifted a against grad_h, reading a and grad_h once). An exclusive scan of (conj(A_r), G_r)
// in the opposite rank order gives each rank the adjoint entering it, and one fused
// scan_backward with that as grad_h_last finishes the slice. The gradient of the replicated
// h_last is summed over ranks (functional collectives' convention) and enters at the last rank.
// Summaries travel and compose in the kernels' accumulation dtype (float64 for float32,
// complex128 for complex64, float32 for bf16/fp16; docs/accuracy.md): a slice's summary is
// rounded to the input dtype once by scan_summary, and the entering state once when the local
// scan takes it, so the exchange adds a fixed few roundings whatever T and P are.
#include "seqpar/sp.h"

#include <torch/autograd.h>
#include <torch/custom_class.h>

#include <sstream>

#include "seqpar/comm/c10d_communicator.h"
#include "seqpar/comm/rank_scan.h"
#include "ops/kernel_params.h"
#include "ops/op_handles.h"
#include "seqpar/scan.h"
#include "sp/autograd_support.h"
#include "sp/slice_header.h"

namespace seqpar::sp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const auto kHolderRegistration = torch::class_<CommunicatorHolder>("seqpar", "_SpCommunicator");

using ops::accumulation_dtype;
using ops::defined_or_null;

// The adjoint leaving a slice when nothing enters it from its end (see the file comment):
//   forward:  lam over t = n-1..0 with lam_t = g_t + conj(a_{t+1}) lam_{t+1}, G = conj(a_0) lam_0
//   reverse:  the same with time flipped.
at::Tensor slice_adjoint_summary(const at::Tensor& a, const at::Tensor& grad_h, bool reverse,
                                 at::ScalarType acc) {
  const int64_t n = a.size(1);
  const auto state_shape = [&] {
    auto s = a.sizes().vec();
    s.erase(s.begin() + 1);
    return s;
  }();
  if (!grad_h.defined() || n == 0) return at::zeros(state_shape, a.options().dtype(acc));
  const at::Tensor first_a = (reverse ? a.select(1, n - 1) : a.select(1, 0)).to(acc);
  const at::Tensor last_g = (reverse ? grad_h.select(1, 0) : grad_h.select(1, n - 1)).to(acc);
  at::Tensor lam = last_g;
  if (n > 1) {
    const at::Tensor tail_a = reverse ? a.narrow(1, 0, n - 1) : a.narrow(1, 1, n - 1);
    const at::Tensor head_g =
        (reverse ? grad_h.narrow(1, 1, n - 1) : grad_h.narrow(1, 0, n - 1)).to(a.scalar_type());
    // summary(a, conj(g)) = conj(summary(conj(a), g)): only g needs conjugating.
    auto [A, B] = seqpar::scan_summary(tail_a, head_g.conj().resolve_conj(), !reverse);
    lam = at::addcmul(B.to(acc).conj(), A.to(acc).conj(), last_g);
  }
  return first_a.conj() * lam;
}

class SpScanFunction : public torch::autograd::Function<SpScanFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                               const std::optional<at::Tensor>& h0_opt, bool reverse,
                               std::shared_ptr<comm::Communicator> group,
                               comm::ExchangeAlgo algo) {
    comm::Communicator& g = *group;
    // An undefined tensor cannot be an autograd input: an absent h0 comes as nullopt.
    const at::Tensor h0 = h0_opt.has_value() ? *h0_opt : at::Tensor();
    const int P = g.size(), rank = g.rank();
    const int first_rank = reverse ? P - 1 : 0;
    const int last_rank = reverse ? 0 : P - 1;
    const at::ScalarType acc = accumulation_dtype(a.scalar_type());
    const comm::Stream stream = stream_for(a);

    auto [A_in, B_in] = seqpar::scan_summary(a, b, reverse);
    at::Tensor A = A_in.to(acc).contiguous();
    at::Tensor B = B_in.to(acc).contiguous();
    // Resolved here, once, so that every rank runs (and the header check compares) the same
    // algorithm and backward runs the one forward ran.
    algo = comm::resolve_exchange_algo(g, comm::diagonal_summary(), {A, B}, algo);
    check_headers_agree("seqpar.sp_scan", g, a, reverse, algo);
    if (rank == first_rank && h0.defined()) B = at::addcmul(B, A, h0.to(acc)).contiguous();
    // h0 is folded into the first summary, so B(E_r) alone is the entering state.
    const at::Tensor EB =
        comm::rank_entering_state(g, comm::diagonal_summary(), {A, B}, reverse, algo, stream);

    at::Tensor entering;  // the state this slice starts from; undefined means zeros
    if (rank == first_rank) {
      entering = h0;
    } else {
      entering = EB.to(a.scalar_type());
    }
    auto [h, h_local_last] = seqpar::scan(a, b, defined_or_null(entering), reverse);
    at::Tensor h_last = h_local_last.contiguous();
    if (P > 1) {
      if (rank != last_rank) h_last = at::empty_like(h_last);
      g.broadcast(comm::mutable_buffer_of(h_last), last_rank, stream);
    }

    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["algo"] = static_cast<int64_t>(algo);
    ctx->saved_data["has_h0"] = h0.defined();
    ctx->saved_data["group"] = c10::make_intrusive<CommunicatorHolder>(group);
    ctx->save_for_backward({a, h, entering, A});
    return {h, h_last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const auto algo = static_cast<comm::ExchangeAlgo>(ctx->saved_data["algo"].toInt());
    const bool has_h0 = ctx->saved_data["has_h0"].toBool();
    auto holder = ctx->saved_data["group"].toCustomClass<CommunicatorHolder>();
    comm::Communicator& g = *holder->comm;
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& a = saved[0];
    const at::Tensor& h = saved[1];
    const at::Tensor& entering = saved[2];
    const at::Tensor& A = saved[3];
    const at::Tensor& grad_h = grads[0];
    const at::Tensor& grad_h_last = grads[1];
    const int P = g.size(), rank = g.rank();
    const int first_rank = reverse ? P - 1 : 0;
    const int last_rank = reverse ? 0 : P - 1;
    const at::ScalarType acc = A.scalar_type();
    const comm::Stream stream = stream_for(a);

    // The replicated h_last's gradient, summed over ranks, enters at the last rank's end.
    at::Tensor ghl = grad_h_last.defined() ? grad_h_last.to(acc).contiguous().clone()
                                           : at::zeros(A.sizes(), A.options());
    if (P > 1) g.all_reduce_sum(comm::mutable_buffer_of(ghl), stream);

    at::Tensor adjoint_A = A.conj().resolve_conj().contiguous();
    at::Tensor adjoint_B = slice_adjoint_summary(a, grad_h, reverse, acc);
    if (rank == last_rank) adjoint_B = at::addcmul(adjoint_B, adjoint_A, ghl);
    adjoint_B = adjoint_B.contiguous();
    const at::Tensor EB = comm::rank_entering_state(g, comm::diagonal_summary(),
                                                    {adjoint_A, adjoint_B}, !reverse, algo, stream);
    const at::Tensor incoming = (rank == last_rank ? ghl : EB).to(a.scalar_type());

    auto [grad_a, grad_b, grad_entering] = ops::scan_backward_op().call(
        a, h, defined_or_null(entering), defined_or_null(grad_h), incoming, reverse, std::nullopt);
    at::Tensor grad_h0;
    if (has_h0) {
      grad_h0 = rank == first_rank ? grad_entering : at::zeros_like(grad_entering);
    }
    return {grad_a, grad_b, grad_h0, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor> packed_scan(const at::Tensor& a, const at::Tensor& b,
                                               const std::optional<at::Tensor>& h0, bool reverse,
                                               const at::Tensor& cu_seqlens,
                                               const std::shared_ptr<comm::Communicator>& group,
                                               const SpOptions& options);  // sp_packed_scan.cpp

std::tuple<at::Tensor, at::Tensor> scan(const at::Tensor& a, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0, bool reverse,
                                        const std::shared_ptr<comm::Communicator>& group,
                                        const SpOptions& options,
                                        const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(group != nullptr, "seqpar::sp::scan: group is null");
  if (cu_seqlens && cu_seqlens->defined())
    return packed_scan(a, b, h0, reverse, *cu_seqlens, group, options);
  TORCH_CHECK(a.dim() >= 2, "seqpar::sp::scan: a must be (batch, time, *channels), got ",
              a.dim(), " dims");
  TORCH_CHECK(a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type(),
              "seqpar::sp::scan: a and b must have the same shape and dtype");
  auto outputs = SpScanFunction::apply(a, b, h0, reverse, group, options.algo);
  return {outputs[0], outputs[1]};
}

std::tuple<at::Tensor, at::Tensor> scan(const at::Tensor& a, const at::Tensor& b,
                                        const std::optional<at::Tensor>& h0, bool reverse,
                                        const std::string& group_name,
                                        const SpOptions& options,
                                        const std::optional<at::Tensor>& cu_seqlens) {
  return scan(a, b, h0, reverse, comm::communicator_for_group(group_name), options, cu_seqlens);
}

}  // namespace seqpar::sp
