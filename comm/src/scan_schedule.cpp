// The Blelloch schedule and its forward and adjoint executors (seqpar/comm/scan_schedule.h).
#include "seqpar/comm/scan_schedule.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "seqpar/comm/tensor_buffer.h"
#include "summary_buffer.h"

namespace seqpar::comm {

namespace {
constexpr int kForwardTag = 7201;
constexpr int kAdjointTag = 7202;
}  // namespace

int ScanSchedule::combines() const {
  return static_cast<int>(std::count_if(steps.begin(), steps.end(), [](const ScanStep& s) {
    return s.op == ScanStep::Op::kCombine;
  }));
}

ScanSchedule blelloch_schedule(int P, int rank, bool reverse) {
  if (P < 1) throw std::invalid_argument("blelloch_schedule: P must be >= 1, got " + std::to_string(P));
  if (rank < 0 || rank >= P) {
    throw std::invalid_argument("blelloch_schedule: rank " + std::to_string(rank) +
                                " is outside [0, " + std::to_string(P) + ")");
  }
  using Op = ScanStep::Op;
  const int q = reverse ? P - 1 - rank : rank;
  auto rank_of = [&](int position) { return reverse ? P - 1 - position : position; };
  // The owner of the block [begin, begin + width): its last existing position.
  auto owner = [&](int begin, int width) { return std::min(begin + width - 1, P - 1); };
  int levels = 0;
  while ((1 << levels) < P) ++levels;

  ScanSchedule s;
  std::vector<ScanStep> steps;
  auto new_slot = [&] { return s.slots++; };
  // Up-sweep: `acc` is the value of the block this position owns.
  int acc = 0;
  std::vector<int> left_value(levels, -1);  // the left child's value, kept for the down-sweep
  for (int k = 0; k < levels; ++k) {
    const int w = 1 << k, base = q / (2 * w) * (2 * w);
    if (base + w >= P) continue;  // no right child: the node is its left child, same owner
    const int lo = owner(base, w), ro = owner(base + w, w);
    if (q == lo) {
      steps.push_back({Op::kSend, rank_of(ro), acc, -1, -1});
    } else if (q == ro) {
      const int left = new_slot();
      steps.push_back({Op::kRecv, rank_of(lo), left, -1, -1});
      left_value[k] = left;
      const int node = new_slot();
      steps.push_back({Op::kCombine, -1, node, acc, left});
      acc = node;
    }
  }
  // Down-sweep: `prefix` is the prefix of the node this position owns (-1: the identity).
  int prefix = -1;
  for (int k = levels - 1; k >= 0; --k) {
    const int w = 1 << k, base = q / (2 * w) * (2 * w);
    if (base + w >= P) continue;
    const int lo = owner(base, w), ro = owner(base + w, w);
    if (q == ro) {
      if (base != 0) steps.push_back({Op::kSend, rank_of(lo), prefix, -1, -1});
      if (base == 0) {
        prefix = left_value[k];
      } else {
        const int right = new_slot();
        steps.push_back({Op::kCombine, -1, right, left_value[k], prefix});
        prefix = right;
      }
    } else if (q == lo) {
      if (base != 0) {
        prefix = new_slot();
        steps.push_back({Op::kRecv, rank_of(ro), prefix, -1, -1});
      } else {
        prefix = -1;
      }
    }
  }
  s.result = prefix;

  // Prune combines whose value nothing reads (the root's, and block values of positions that
  // never send them). Messages are always kept: the peer's matching call is in its schedule.
  std::vector<bool> live(s.slots, false);
  if (s.result >= 0) live[s.result] = true;
  std::vector<ScanStep> kept;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->op == Op::kCombine) {
      if (!live[it->slot]) continue;
      live[it->later] = live[it->earlier] = true;
    } else if (it->op == Op::kSend) {
      live[it->slot] = true;
    }
    kept.push_back(*it);
  }
  s.steps.assign(kept.rbegin(), kept.rend());
  return s;
}

namespace {

void check_own(const char* call, const SummaryParts& own) {
  if (own.empty()) throw std::invalid_argument(std::string(call) + ": the summary has no parts");
  for (const at::Tensor& t : own) {
    TORCH_CHECK(t.defined() && t.scalar_type() == own[0].scalar_type() &&
                    t.device() == own[0].device(),
                call, ": the parts of a summary must be defined and share dtype and device");
  }
}

SummaryParts zeros_like_parts(const SummaryParts& like) {
  SummaryParts z;
  for (const at::Tensor& t : like) z.push_back(at::zeros_like(t, at::MemoryFormat::Contiguous));
  return z;
}

void accumulate(SummaryParts& into, const SummaryParts& g) {
  if (into.empty()) {
    for (const at::Tensor& t : g) into.push_back(t);
    return;
  }
  for (size_t j = 0; j < into.size(); ++j) into[j] = into[j] + g[j];
}

}  // namespace

std::optional<SummaryParts> run_scan_schedule(Communicator& comm, const ScanSchedule& schedule,
                                              const SummaryParts& own,
                                              const ScheduleCombine& combine, Stream stream) {
  check_own("run_scan_schedule", own);
  std::vector<SummaryParts> slots(schedule.slots);
  for (const at::Tensor& t : own) slots[0].push_back(t.contiguous());
  const int64_t n = detail::packed_numel(own);
  for (std::size_t i = 0; i < schedule.steps.size(); ++i) {
    const ScanStep& step = schedule.steps[i];
    switch (step.op) {
      case ScanStep::Op::kSend: {
        at::Tensor buffer = detail::pack(slots[step.slot]);
        comm.send(const_buffer_of(buffer), step.peer, kForwardTag, stream);
        break;
      }
      case ScanStep::Op::kRecv: {
        at::Tensor buffer = at::empty({n}, own[0].options());
        comm.recv(mutable_buffer_of(buffer), step.peer, kForwardTag, stream);
        slots[step.slot] = detail::unpack(buffer, own);
        break;
      }
      case ScanStep::Op::kCombine:
        slots[step.slot] = combine(i, slots[step.later], slots[step.earlier]);
        break;
    }
  }
  if (schedule.result < 0) return std::nullopt;
  return slots[schedule.result];
}

SummaryParts run_scan_schedule_adjoint(Communicator& comm, const ScanSchedule& schedule,
                                       const SummaryParts& like, const SummaryParts& grad_result,
                                       const ScheduleCombineVjp& vjp, Stream stream) {
  check_own("run_scan_schedule_adjoint", like);
  std::vector<SummaryParts> grads(schedule.slots);  // empty: zero
  if (schedule.result >= 0 && !grad_result.empty()) {
    TORCH_CHECK(grad_result.size() == like.size(),
                "run_scan_schedule_adjoint: grad_result has ", grad_result.size(),
                " parts, the summary ", like.size());
    SummaryParts g;
    for (size_t j = 0; j < like.size(); ++j) {
      g.push_back(grad_result[j].defined() ? grad_result[j].contiguous()
                                           : at::zeros_like(like[j], at::MemoryFormat::Contiguous));
    }
    grads[schedule.result] = g;
  }
  const int64_t n = detail::packed_numel(like);
  for (std::size_t i = schedule.steps.size(); i-- > 0;) {
    const ScanStep& step = schedule.steps[i];
    switch (step.op) {
      case ScanStep::Op::kSend: {  // what was sent comes back as its gradient
        at::Tensor buffer = at::empty({n}, like[0].options());
        comm.recv(mutable_buffer_of(buffer), step.peer, kAdjointTag, stream);
        accumulate(grads[step.slot], detail::unpack(buffer, like));
        break;
      }
      case ScanStep::Op::kRecv: {  // the gradient of what was received goes back
        at::Tensor buffer = detail::pack(grads[step.slot].empty() ? zeros_like_parts(like)
                                                                  : grads[step.slot]);
        comm.send(const_buffer_of(buffer), step.peer, kAdjointTag, stream);
        break;
      }
      case ScanStep::Op::kCombine: {
        if (grads[step.slot].empty()) break;  // nothing downstream: zero contributions
        auto [g_later, g_earlier] = vjp(i, grads[step.slot]);
        accumulate(grads[step.later], g_later);
        accumulate(grads[step.earlier], g_earlier);
        break;
      }
    }
  }
  return grads[0].empty() ? zeros_like_parts(like) : grads[0];
}

}  // namespace seqpar::comm
