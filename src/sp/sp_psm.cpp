// Sequence-parallel static scan of chunk states (seqpar/psm.h: sp_static_scan).
//
// Each rank runs the up-sweep over its own chunks (an aligned power-of-two block of the
// sequence), up to its block's root; the roots are scanned across ranks by comm's Blelloch
// schedule, which keeps one device's parenthesization; each rank then runs the down-sweep from
// the prefix it received. The cross-rank part is one autograd Function: its forward runs the
// schedule, calling Agg with autograd on detached inputs and keeping each call's graph; its
// backward runs the schedule's adjoint, each combine's vector-Jacobian product coming from
// that graph (gradients of both inputs and of Agg's parameters).
//
// A rank whose prefix is the identity (rank 0) still takes part in the backward exchange: the
// Function's output (zeros) becomes the identity placeholder of its prefixes, so the loss
// always reaches the Function whenever it reads this rank's prefixes.
#include <torch/custom_class.h>
#include <torch/torch.h>

#include <map>
#include <sstream>
#include <stdexcept>

#include "psm/blelloch_sweeps.h"
#include "seqpar/comm/communicator.h"
#include "seqpar/comm/rank_scan.h"
#include "seqpar/comm/scan_schedule.h"
#include "sp/autograd_support.h"

namespace seqpar::psm {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Everything the cross-rank Function's backward needs (saved_data holds IValues only).
struct RankScanState : torch::CustomClassHolder {
  std::shared_ptr<comm::Communicator> group;
  comm::ScanSchedule schedule;
  Aggregate agg;
  at::Tensor root_zeros;  // shaped like the root: the adjoint's "like" and the identity's value
  struct Call {
    at::Tensor later, earlier, out;  // Agg(earlier, later) = out, inputs detached leaves
  };
  std::map<std::size_t, Call> calls;
};
const auto kStateRegistration = torch::class_<RankScanState>("seqpar", "_PsmRankScan");

// This rank's exclusive prefix of the roots; the identity comes back as zeros.
at::Tensor run_forward(RankScanState& s, const at::Tensor& root, bool record) {
  auto result = comm::run_scan_schedule(
      *s.group, s.schedule, {root.detach()},
      [&](std::size_t step, const comm::SummaryParts& later, const comm::SummaryParts& earlier) {
        if (!record) return comm::SummaryParts{s.agg(earlier[0], later[0])};
        torch::AutoGradMode grad(true);
        at::Tensor l = later[0].detach().requires_grad_(true);
        at::Tensor e = earlier[0].detach().requires_grad_(true);
        at::Tensor out = s.agg(e, l);
        s.calls[step] = {l, e, out};
        return comm::SummaryParts{out.detach()};
      },
      sp::stream_for(root));
  // A fresh tensor, never root_zeros itself: the output gets this Function as grad_fn, and the
  // state holding it would then hold the graph (a reference cycle).
  return result ? (*result)[0] : at::zeros_like(s.root_zeros);
}

class CrossRankScan : public torch::autograd::Function<CrossRankScan> {
 public:
  // root: this rank's block value (batch, ...); params: Agg's parameters (for their gradients).
  static variable_list forward(AutogradContext* ctx, const at::Tensor& root, at::TensorList params,
                               c10::intrusive_ptr<RankScanState> state) {
    at::Tensor out = run_forward(*state, root, /*record=*/true);
    ctx->saved_data["state"] = state;
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto state = ctx->saved_data["state"].toCustomClass<RankScanState>();
    const std::vector<at::Tensor>& params = state->agg.parameters;
    const int64_t n_params = static_cast<int64_t>(params.size());
    std::vector<at::Tensor> param_grads(n_params);
    comm::SummaryParts grad_own = comm::run_scan_schedule_adjoint(
        *state->group, state->schedule, {state->root_zeros}, {grads[0]},
        [&](std::size_t step, const comm::SummaryParts& g) {
          RankScanState::Call& call = state->calls.at(step);
          std::vector<at::Tensor> inputs{call.later, call.earlier};
          std::vector<int64_t> which;
          for (int64_t i = 0; i < n_params; ++i) {
            if (params[i].requires_grad()) {
              inputs.push_back(params[i]);
              which.push_back(i);
            }
          }
          torch::AutoGradMode grad(true);
          auto out = torch::autograd::grad({call.out}, inputs, {g[0]}, /*retain_graph=*/false,
                                           /*create_graph=*/false, /*allow_unused=*/true);
          for (size_t j = 0; j < which.size(); ++j) {
            at::Tensor& acc = param_grads[which[j]];
            if (out[2 + j].defined()) acc = acc.defined() ? acc + out[2 + j] : out[2 + j];
          }
          auto or_zeros = [](const at::Tensor& t, const at::Tensor& like_t) {
            return t.defined() ? t : at::zeros_like(like_t);
          };
          call = {};  // the graph is spent
          return std::make_pair(comm::SummaryParts{or_zeros(out[0], inputs[0])},
                                comm::SummaryParts{or_zeros(out[1], inputs[1])});
        },
        sp::stream_for(grads[0]));
    state->calls.clear();
    variable_list result{grad_own[0]};
    for (at::Tensor& g : param_grads) result.push_back(g);
    result.emplace_back();  // the state argument
    return result;
  }
};

[[noreturn]] void bad_layout(const std::vector<int64_t>& counts, const std::string& why) {
  std::ostringstream os;
  os << "seqpar::psm::sp_static_scan: chunks per rank [";
  for (size_t r = 0; r < counts.size(); ++r) os << (r ? ", " : "") << counts[r];
  os << "]: " << why
     << " (each rank must hold an aligned power-of-two block of chunks so the tree across "
        "ranks keeps one device's order: n_0 a power of two, every rank before the last "
        "non-empty one holding n_0, that one at most n_0, the rest none)";
  throw std::invalid_argument(os.str());
}

}  // namespace

Prefixes sp_static_scan(const at::Tensor& chunks, const Aggregate& agg,
                        std::shared_ptr<comm::Communicator> group, bool partial_last_chunk) {
  TORCH_CHECK(group, "seqpar::psm::sp_static_scan: group is null");
  TORCH_CHECK(agg.fn, "seqpar::psm::sp_static_scan: agg has no function");
  TORCH_CHECK(chunks.dim() >= 2, "seqpar::psm::sp_static_scan: chunks must be (batch, n, ...), got ",
              chunks.sizes());
  const int P = group->size(), rank = group->rank();
  if (P == 1) return static_scan(chunks, agg);

  // Every rank learns every rank's chunk count and state size; all check the same layout, so
  // a bad one throws on every rank instead of hanging one.
  const int64_t state_numel = chunks.size(1) > 0 ? chunks.select(1, 0).numel() : -1;
  std::vector<int64_t> mine{chunks.size(1), state_numel, static_cast<int64_t>(chunks.scalar_type()),
                            partial_last_chunk && chunks.size(1) > 0 ? 1 : 0};
  std::vector<int64_t> all(mine.size() * P);
  group->all_gather(
      comm::host_buffer(mine.data(), mine.size() * sizeof(int64_t), comm::DataType::kInt64),
      comm::host_buffer(all.data(), all.size() * sizeof(int64_t), comm::DataType::kInt64));
  std::vector<int64_t> counts(P);
  int last = -1;
  for (int r = 0; r < P; ++r) {
    counts[r] = all[r * mine.size()];
    if (counts[r] > 0) last = r;
  }
  const int64_t block = counts[0];
  if (last > 0) {
    if ((block & (block - 1)) != 0) bad_layout(counts, "rank 0's count is not a power of two");
    for (int r = 0; r < last; ++r)
      if (counts[r] != block) bad_layout(counts, "rank " + std::to_string(r) + " differs from rank 0");
    if (counts[last] > block) bad_layout(counts, "the last non-empty rank holds more than rank 0");
    for (int r = 0; r < last; ++r) {
      if (all[r * mine.size() + 3] != 0) {
        bad_layout(counts, "rank " + std::to_string(r) +
                               "'s slice ends in a partial chunk (its slice is not a whole number "
                               "of chunks); only the last non-empty rank's may");
      }
    }
    for (int r = 0; r <= last; ++r) {
      if (all[r * mine.size() + 1] != all[1] || all[r * mine.size() + 2] != all[2]) {
        throw std::invalid_argument(
            "seqpar::psm::sp_static_scan: rank " + std::to_string(r) +
            "'s chunk states differ in size or dtype from rank 0's (every rank must pass the "
            "same batch and state shape)");
      }
    }
  }
  if (last <= 0 || chunks.size(1) == 0) {
    // One rank holds everything, or this rank holds nothing: no exchange.
    return rank == 0 || last <= 0 ? static_scan(chunks, agg) : Prefixes{chunks, true};
  }

  std::vector<at::Tensor> levels = detail::up_sweep(chunks, agg, /*with_root=*/true);
  const at::Tensor root = levels.back().select(1, 0);
  auto state = c10::make_intrusive<RankScanState>();
  state->group = group;
  state->schedule = comm::blelloch_schedule(last + 1, rank, /*reverse=*/false);
  state->agg = agg;
  state->root_zeros = at::zeros_like(root.detach());
  const bool record = torch::GradMode::is_enabled();
  const at::Tensor entering =
      record ? CrossRankScan::apply(root, at::TensorList(agg.parameters), state)[0]
             : run_forward(*state, root, /*record=*/false);
  if (state->schedule.result < 0) {
    // The identity: the output (zeros) is the placeholder of chunk 0's prefix.
    return detail::down_sweep(levels, agg, std::nullopt, entering);
  }
  return detail::down_sweep(levels, agg, entering);
}

}  // namespace seqpar::psm
