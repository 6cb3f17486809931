// The 2x2 block scan on the CPU (block_scan_params.h): forward, backward and summary, each a
// policy of the scan engine (block_forward_policy.h, block_backward_policy.h), compiled per
// instruction-set target like the diagonal scan and chosen by the same dispatch.
#include "block_backward_policy.h"
#include "block_forward_policy.h"
#include "dispatch.h"
#include "seqpar/kernels/cpu_block_scan.h"
#include "target.h"

namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET {
namespace {

// fn(S{}, std::integral_constant<bool, kLower>{}) for the params' dtype and lower flag.
template <class Fn>
void dispatch_block(ScalarKind dtype, bool lower, const char* what, Fn&& fn) {
  dispatch_real_kind(dtype, what, [&](auto tag) {
    if (lower)
      fn(tag, std::true_type{});
    else
      fn(tag, std::false_type{});
  });
}

}  // namespace

// A forward or backward policy over the engine; T = 0 writes each final state (the initial one:
// h0 -> h_last, grad_h_last -> grad_h0).
template <template <class, bool> class Policy, class Params>
void run_block(const Params& p, const char* what) {
  dispatch_block(p.dtype, p.lower_triangular, what, [&](auto tag, auto lower) {
    const Policy<decltype(tag), decltype(lower)::value> policy(p);
    const ScanShape& n = p.shape;
    if (n.time == 0) {
      for (int64_t bi = 0; bi < n.batch; ++bi)
        for (int64_t c = 0; c < n.channels; ++c) policy.finish(bi, c, policy.initial(bi, c));
      return;
    }
    engine::run_scan(policy, n.batch, n.time, n.channels, p.num_threads, p.deterministic);
  });
}

void block_scan_forward(const BlockScanForwardParams& p) {
  run_block<BlockForwardPolicy>(p, "seqpar::kernels::cpu::block_scan_forward");
}

void block_scan_backward(const BlockScanBackwardParams& p) {
  run_block<BlockBackwardPolicy>(p, "seqpar::kernels::cpu::block_scan_backward");
}

void block_scan_summary(const BlockScanSummaryParams& p) {
  dispatch_block(p.dtype, p.lower_triangular, "seqpar::kernels::cpu::block_scan_summary",
                 [&](auto tag, auto lower) {
                   using S = decltype(tag);
                   using P = BlockForwardPolicy<S, decltype(lower)::value>;
                   const P policy(p.A, p.b, Operand3{}, ConstOperand2{}, Operand2{});
                   S* M = static_cast<S*>(p.M.data);
                   S* E = static_cast<S*>(p.E.data);
                   auto out = [&](int64_t bi, int64_t c, typename P::Map m, typename P::Acc e) {
                     store_map(M + bi * p.M.stride.batch + c * p.M.stride.channel, m);
                     store_vec(E + bi * p.E.stride.batch + c * p.E.stride.channel, e);
                   };
                   const ScanShape& n = p.shape;
                   if (n.time == 0) {
                     for (int64_t bi = 0; bi < n.batch; ++bi)
                       for (int64_t c = 0; c < n.channels; ++c)
                         out(bi, c, acc_one<typename P::Map>(), acc_zero<typename P::Acc>());
                     return;
                   }
                   engine::run_summary(policy, n.batch, n.time, n.channels, p.num_threads, out);
                 });
}

}  // namespace seqpar::kernels::cpu::SEQPAR_CPU_TARGET
