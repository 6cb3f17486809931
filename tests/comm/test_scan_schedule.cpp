// The Blelloch schedule (seqpar/comm/scan_schedule.h) against the textbook single-array static
// Blelloch scan, with combines that are not associative:
// - every P from 1 to 40 in one process: all ranks' schedules run against each other through an
//   in-memory message queue, combining strings "(earlier.later)", so the parenthesization is
//   compared exactly; a schedule that would deadlock fails;
// - under mpirun: run_scan_schedule with a non-associative numeric combine equals the textbook
//   scan bit for bit, and run_scan_schedule_adjoint equals autograd through that scan.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/comm/scan_schedule.h"

namespace seqpar::comm {
namespace {

// The textbook in-place static Blelloch scan over n items padded to a power of two with
// identities (nullopt) that `agg` never sees. Returns the exclusive prefixes (nullopt: identity).
template <typename T, typename Agg>
std::vector<std::optional<T>> textbook_blelloch(const std::vector<T>& items, Agg agg) {
  size_t N = 1;
  while (N < items.size()) N *= 2;
  std::vector<std::optional<T>> a(N);
  for (size_t i = 0; i < items.size(); ++i) a[i] = items[i];
  auto combine = [&](const std::optional<T>& left, const std::optional<T>& right) -> std::optional<T> {
    if (!left) return right;
    if (!right) return left;
    return agg(*left, *right);
  };
  for (size_t d = 1; d < N; d *= 2)
    for (size_t i = 0; i < N; i += 2 * d) a[i + 2 * d - 1] = combine(a[i + d - 1], a[i + 2 * d - 1]);
  a[N - 1] = std::nullopt;
  for (size_t d = N / 2; d >= 1; d /= 2) {
    for (size_t i = 0; i < N; i += 2 * d) {
      std::optional<T> t = a[i + d - 1];
      a[i + d - 1] = a[i + 2 * d - 1];
      a[i + 2 * d - 1] = combine(a[i + 2 * d - 1], t);
    }
  }
  a.resize(items.size());
  return a;
}

// Every rank's schedule run in one process; sends are queued, a receive waits for its message.
std::vector<std::optional<std::string>> simulate(int P, bool reverse, int* max_combines) {
  std::vector<ScanSchedule> schedules;
  for (int r = 0; r < P; ++r) schedules.push_back(blelloch_schedule(P, r, reverse));
  std::vector<std::vector<std::string>> slots(P);
  std::vector<size_t> pc(P, 0);
  std::map<std::pair<int, int>, std::deque<std::string>> queue;  // (from, to) -> messages
  for (int r = 0; r < P; ++r) {
    slots[r].resize(schedules[r].slots);
    const int position = reverse ? P - 1 - r : r;
    slots[r][0] = "s" + std::to_string(position);
  }
  *max_combines = 0;
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < P; ++r) {
      while (pc[r] < schedules[r].steps.size()) {
        const ScanStep& s = schedules[r].steps[pc[r]];
        if (s.op == ScanStep::Op::kSend) {
          queue[{r, s.peer}].push_back(slots[r][s.slot]);
        } else if (s.op == ScanStep::Op::kRecv) {
          auto& q = queue[{s.peer, r}];
          if (q.empty()) break;
          slots[r][s.slot] = q.front();
          q.pop_front();
        } else {
          slots[r][s.slot] = "(" + slots[r][s.earlier] + "." + slots[r][s.later] + ")";
        }
        ++pc[r];
        progress = true;
      }
    }
  }
  std::vector<std::optional<std::string>> out(P);
  for (int r = 0; r < P; ++r) {
    EXPECT_EQ(pc[r], schedules[r].steps.size()) << "P=" << P << ": rank " << r << " is stuck";
    *max_combines = std::max(*max_combines, schedules[r].combines());
    const int position = reverse ? P - 1 - r : r;
    if (schedules[r].result >= 0) out[position] = slots[r][schedules[r].result];
  }
  for (auto& [key, q] : queue) EXPECT_TRUE(q.empty()) << "P=" << P << ": unreceived message";
  return out;
}

TEST(BlellochSchedule, SameParenthesizationAsTheTextbookScanForEveryP) {
  for (bool reverse : {false, true}) {
    for (int P = 1; P <= 40; ++P) {
      std::vector<std::string> items;
      for (int q = 0; q < P; ++q) items.push_back("s" + std::to_string(q));
      const auto want = textbook_blelloch(items, [](const std::string& l, const std::string& r) {
        return "(" + l + "." + r + ")";
      });
      int max_combines = 0;
      const auto got = simulate(P, reverse, &max_combines);
      for (int q = 0; q < P; ++q) {
        EXPECT_EQ(got[q].has_value(), want[q].has_value()) << "P=" << P << " position " << q;
        if (got[q] && want[q]) EXPECT_EQ(*got[q], *want[q]) << "P=" << P << " position " << q;
      }
      const int levels = static_cast<int>(std::ceil(std::log2(std::max(P, 1))));
      EXPECT_LE(max_combines, 2 * levels) << "P=" << P;
    }
  }
}

TEST(BlellochSchedule, RejectsBadArguments) {
  EXPECT_THROW(blelloch_schedule(0, 0, false), std::invalid_argument);
  EXPECT_THROW(blelloch_schedule(3, 3, false), std::invalid_argument);
  EXPECT_THROW(blelloch_schedule(3, -1, true), std::invalid_argument);
}

// A combine that is not associative: tanh(0.5 earlier + 1.5 later + 0.1), elementwise.
SummaryParts nonassoc(const SummaryParts& later, const SummaryParts& earlier) {
  return {torch::tanh(0.5 * earlier[0] + 1.5 * later[0] + 0.1)};
}

torch::Tensor item_of(int position) {
  return torch::sin(torch::arange(12, torch::kDouble).view({3, 4}) * 0.37 + position);
}

TEST(BlellochScheduleMpi, NonAssociativeCombineMatchesTheTextbookScanExactly) {
  MpiCommunicator comm;
  const int P = comm.size();
  for (bool reverse : {false, true}) {
    std::vector<torch::Tensor> items;
    for (int q = 0; q < P; ++q) items.push_back(item_of(q));
    const auto want = textbook_blelloch(items, [](const torch::Tensor& l, const torch::Tensor& r) {
      return nonassoc({r}, {l})[0];
    });
    const int position = reverse ? P - 1 - comm.rank() : comm.rank();
    const ScanSchedule schedule = blelloch_schedule(P, comm.rank(), reverse);
    const auto got = run_scan_schedule(
        comm, schedule, {item_of(position)},
        [](std::size_t, const SummaryParts& later, const SummaryParts& earlier) {
          return nonassoc(later, earlier);
        });
    ASSERT_EQ(got.has_value(), want[position].has_value()) << "position " << position;
    if (got) EXPECT_TRUE(torch::equal((*got)[0], *want[position])) << "position " << position;
  }
}

TEST(BlellochScheduleMpi, AdjointMatchesAutogradThroughTheTextbookScan) {
  MpiCommunicator comm;
  const int P = comm.size();
  for (bool reverse : {false, true}) {
    // Reference: every item a leaf; loss = sum over positions q of <w_q, prefix_q>.
    std::vector<torch::Tensor> leaves;
    for (int q = 0; q < P; ++q) leaves.push_back(item_of(q).requires_grad_(true));
    const auto prefixes = textbook_blelloch(leaves, [](const torch::Tensor& l, const torch::Tensor& r) {
      return nonassoc({r}, {l})[0];
    });
    auto weight = [](int q) { return torch::cos(torch::arange(12, torch::kDouble).view({3, 4}) + 2.0 * q); };
    torch::Tensor loss = torch::zeros({}, torch::kDouble);
    for (int q = 0; q < P; ++q)
      if (prefixes[q]) loss = loss + (*prefixes[q] * weight(q)).sum();
    if (loss.requires_grad()) loss.backward();

    const int position = reverse ? P - 1 - comm.rank() : comm.rank();
    const ScanSchedule schedule = blelloch_schedule(P, comm.rank(), reverse);
    // Forward, keeping each combine's inputs for the analytic VJP.
    std::map<std::size_t, std::pair<torch::Tensor, torch::Tensor>> saved;
    const auto result = run_scan_schedule(
        comm, schedule, {item_of(position)},
        [&](std::size_t step, const SummaryParts& later, const SummaryParts& earlier) {
          saved[step] = {later[0], earlier[0]};
          return nonassoc(later, earlier);
        });
    const SummaryParts grad = run_scan_schedule_adjoint(
        comm, schedule, {item_of(position)}, {weight(position)},
        [&](std::size_t step, const SummaryParts& g) {
          const auto& [later, earlier] = saved.at(step);
          const torch::Tensor y = torch::tanh(0.5 * earlier + 1.5 * later + 0.1);
          const torch::Tensor dy = g[0] * (1 - y * y);
          return std::make_pair(SummaryParts{1.5 * dy}, SummaryParts{0.5 * dy});
        });
    (void)result;
    const torch::Tensor want = leaves[position].grad().defined()
                                   ? leaves[position].grad()
                                   : torch::zeros_like(leaves[position]);
    EXPECT_TRUE(torch::allclose(grad[0], want, 1e-12, 1e-12))
        << "position " << position << "\n" << grad[0] << "\n" << want;
  }
}

}  // namespace
}  // namespace seqpar::comm
