// The two cross-rank steps of a sequence-parallel affine recurrence over matrix-valued (or
// diagonal) states, as autograd Functions: the state entering this rank's slice from the
// exclusive scan of the slices' summaries (M_r, E_r), and the global final state broadcast from
// the last rank. sp_matrix_state.cpp (GLA, gated DeltaNet) and sp_previous_steps.cpp (the
// window of steps before a slice) are built on them; the math of the backward is in
// sp_matrix_state.cpp's header.
#pragma once

#include <torch/autograd.h>

#include <memory>
#include <optional>
#include <vector>

#include "seqpar/comm/communicator.h"
#include "seqpar/comm/rank_scan.h"
#include "sp/autograd_support.h"

namespace seqpar::sp {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// GLA's transition is diagonal (per key channel, broadcast over values); gated DeltaNet's is
// a K x K matrix.
enum class Transition : int64_t { kDiagonal = 0, kMatrix = 1 };

inline const comm::SummaryKind& kind_of(Transition t) {
  return t == Transition::kDiagonal ? comm::diagonal_summary() : comm::matrix_summary();
}
inline at::Tensor apply_transition(Transition t, const at::Tensor& M, const at::Tensor& x) {
  return t == Transition::kDiagonal ? M * x : at::matmul(M, x);
}
inline at::Tensor transition_gradient(Transition t, const at::Tensor& mu, const at::Tensor& x) {
  return t == Transition::kDiagonal ? mu * x : at::matmul(mu, x.transpose(-1, -2));
}

class EnteringState : public torch::autograd::Function<EnteringState> {
 public:
  // M: shaped like E for kDiagonal, (..., K, K) for kMatrix; E and h0: (..., K, V).
  // reverse: the scan runs in reverse rank order (rank P - 1 first; the packed reverse scan).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& M, const at::Tensor& E,
                            const std::optional<at::Tensor>& h0_opt, int64_t transition,
                            std::shared_ptr<comm::Communicator> group, int64_t algo,
                            bool reverse) {
    const Transition t = static_cast<Transition>(transition);
    comm::Communicator& g = *group;
    const at::Tensor h0 = h0_opt ? *h0_opt : at::Tensor();
    const bool first = g.rank() == (reverse ? g.size() - 1 : 0);
    at::Tensor own_E = E;
    if (first && h0.defined()) own_E = apply_transition(t, M, h0) + E;
    const at::Tensor entering =
        comm::rank_entering_state(g, kind_of(t), {M, own_E}, reverse,
                                  static_cast<comm::ExchangeAlgo>(algo), stream_for(E));
    at::Tensor x = first ? (h0.defined() ? h0.clone() : at::zeros_like(E)) : entering;
    ctx->saved_data["transition"] = transition;
    ctx->saved_data["algo"] = algo;
    ctx->saved_data["has_h0"] = h0.defined();
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["group"] = c10::make_intrusive<CommunicatorHolder>(group);
    ctx->save_for_backward({M, x});
    return x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Transition t = static_cast<Transition>(ctx->saved_data["transition"].toInt());
    const auto algo = static_cast<comm::ExchangeAlgo>(ctx->saved_data["algo"].toInt());
    const bool has_h0 = ctx->saved_data["has_h0"].toBool();
    const bool reverse = ctx->saved_data["reverse"].toBool();
    comm::Communicator& g = *ctx->saved_data["group"].toCustomClass<CommunicatorHolder>()->comm;
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &M = saved[0], &x = saved[1];
    const at::Tensor gx = grads[0].defined() ? grads[0].contiguous() : at::zeros_like(x);
    const comm::SummaryKind& kind = kind_of(t);
    // mu_{r+1}: the adjoint entering this slice from its end (in the scan's rank order).
    const at::Tensor mu_next = comm::rank_entering_state(
        g, kind, {kind.adjoint_transition(M), gx}, !reverse, algo, stream_for(x));
    at::Tensor grad_h0;
    if (has_h0) {
      const bool first = g.rank() == (reverse ? g.size() - 1 : 0);
      grad_h0 = first ? apply_transition(t, kind.adjoint_transition(M), mu_next) + gx
                      : at::zeros_like(x);
    }
    return {transition_gradient(t, mu_next, x), mu_next, grad_h0, at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

// The gradient of an output every rank holds a copy of: the sum of the ranks' gradients
// (functional collectives' convention), on every rank.
inline at::Tensor summed_over_ranks(comm::Communicator& g, const at::Tensor& grad) {
  at::Tensor total = grad.contiguous().clone();
  if (g.size() > 1) g.all_reduce_sum(comm::mutable_buffer_of(total), stream_for(total));
  return total;
}

// The last rank's final state on every rank; its gradient is the sum of the ranks' gradients,
// entering at the last rank.
class FinalFromLast : public torch::autograd::Function<FinalFromLast> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& f,
                            std::shared_ptr<comm::Communicator> group) {
    comm::Communicator& g = *group;
    at::Tensor out = f.contiguous().clone();
    if (g.size() > 1) g.broadcast(comm::mutable_buffer_of(out), g.size() - 1, stream_for(out));
    ctx->saved_data["group"] = c10::make_intrusive<CommunicatorHolder>(group);
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    comm::Communicator& g = *ctx->saved_data["group"].toCustomClass<CommunicatorHolder>()->comm;
    at::Tensor total = summed_over_ranks(g, grads[0]);
    if (g.rank() != g.size() - 1) total.zero_();
    return {total, at::Tensor()};
  }
};

// The exchange algorithm for summaries (M, E) of kind t under `options`, resolved once here
// so that forward and backward run the same one.
inline int64_t resolve_algo(comm::Communicator& g, const SpOptions& options, Transition t,
                            const at::Tensor& M, const at::Tensor& E) {
  return static_cast<int64_t>(comm::resolve_exchange_algo(g, kind_of(t), {M, E}, options.algo));
}

// Every rank's `mine` (sizes and dtype, described by `what`) must equal rank 0's before
// summaries are exchanged; `need` says what every rank must pass.
inline void check_ranks_agree(comm::Communicator& g, const char* op, const char* what,
                              std::vector<int64_t> mine, const char* need) {
  std::vector<int64_t> all(mine.size() * g.size());
  g.all_gather(comm::host_buffer(mine.data(), mine.size() * sizeof(int64_t), comm::DataType::kInt64),
               comm::host_buffer(all.data(), all.size() * sizeof(int64_t), comm::DataType::kInt64));
  for (int r = 0; r < g.size(); ++r)
    for (size_t i = 0; i < mine.size(); ++i)
      TORCH_CHECK(all[r * mine.size() + i] == all[i], op, ": rank ", r, " has ", what,
                  " different from rank 0's; every rank must pass its own time slice of ", need);
}

}  // namespace seqpar::sp
