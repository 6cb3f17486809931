// seqpar::sp::scan on the MPI backend against one process scanning the whole sequence: a plain
// ATen loop h_t = a_t*h_{t-1} + b_t in float64 with autograd, independent of seqpar's kernels.
// Every rank builds the same full problem from a fixed seed and takes its own slice; slices are
// even, uneven, or empty on some ranks; forward and reverse; with and without h0; every
// exchange algorithm. Backward uses the global loss sum_r [ <h_r, w_r> + <h_last, v*(r+1)> ],
// whose single-process form is <h, w> + <h_last, v*P(P+1)/2> (the replicated h_last's gradient
// is summed over ranks).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/comm/rank_scan.h"
#include "seqpar/sp.h"

namespace seqpar::sp {
namespace {

using comm::MpiCommunicator;

// Reference: the recurrence as a loop of ATen ops (differentiable, any dtype).
std::pair<at::Tensor, at::Tensor> reference_scan(const at::Tensor& a, const at::Tensor& b,
                                                 const at::Tensor& h0, bool reverse) {
  const int64_t T = a.size(1);
  at::Tensor state = h0.defined() ? h0 : at::zeros_like(a.select(1, 0));
  std::vector<at::Tensor> hs(static_cast<std::size_t>(T));
  for (int64_t k = 0; k < T; ++k) {
    const int64_t t = reverse ? T - 1 - k : k;
    state = a.select(1, t) * state + b.select(1, t);
    hs[static_cast<std::size_t>(t)] = state;
  }
  if (T == 0) return {at::empty_like(a), state};
  return {at::stack(hs, 1), state};
}

enum class Split { kEven, kUneven, kEmptySlices };

// Slice lengths of each rank for a split; the total is whatever they add up to.
std::vector<int64_t> slice_lengths(Split split, int P) {
  std::vector<int64_t> len(static_cast<std::size_t>(P));
  for (int r = 0; r < P; ++r) {
    switch (split) {
      case Split::kEven: len[r] = 6; break;
      case Split::kUneven: len[r] = 1 + (7 * r + 3) % 5; break;
      // Rank 1 holds nothing; so do the last rank when P > 3 and rank 0 when P > 4, so that
      // both ends of the sequence and neighbouring empty ranks are covered.
      case Split::kEmptySlices:
        len[r] = (r == 1 || (r == P - 1 && P > 3) || (r == 0 && P > 4)) ? 0 : 3 + r % 4;
        break;
    }
  }
  return len;
}

struct Case {
  Split split;
  bool reverse;
  bool with_h0;
  ExchangeAlgo algo;
  at::ScalarType dtype;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  const char* split = c.split == Split::kEven ? "even" : (c.split == Split::kUneven ? "uneven" : "empty");
  const char* algo = comm::exchange_algo_name(c.algo);
  return std::string(split) + (c.reverse ? "_reverse" : "_forward") + (c.with_h0 ? "_h0_" : "_noh0_") +
         algo + "_" + c10::toString(c.dtype);
}

class SpScan : public testing::TestWithParam<Case> {};

TEST_P(SpScan, ForwardAndBackwardMatchOneProcess) {
  const Case c = GetParam();
  auto group = std::make_shared<MpiCommunicator>();
  const int P = group->size(), r = group->rank();
  const std::vector<int64_t> len = slice_lengths(c.split, P);
  int64_t total = 0, start = 0;
  for (int q = 0; q < P; ++q) {
    if (q == r) start = total;
    total += len[q];
  }
  const int64_t batch = 2;
  torch::manual_seed(1234);  // the same full problem on every rank
  auto real = at::TensorOptions().dtype(at::kDouble);
  at::Tensor a = 0.6 + 0.35 * torch::rand({batch, total, 3, 4}, real);
  at::Tensor b = torch::rand({batch, total, 3, 4}, real) - 0.5;
  at::Tensor h0 = torch::rand({batch, 3, 4}, real) - 0.5;
  at::Tensor w = torch::rand({batch, total, 3, 4}, real) - 0.5;
  at::Tensor v = torch::rand({batch, 3, 4}, real) - 0.5;
  if (at::isComplexType(c.dtype)) {
    // Rotate a by a small phase and give b an imaginary part.
    at::Tensor phase = 0.3 * torch::rand({batch, total, 3, 4}, real);
    a = at::polar(a, phase);
    b = at::complex(b, torch::rand({batch, total, 3, 4}, real) - 0.5);
    h0 = at::complex(h0, h0 * 0.5);
    w = at::complex(w, w.flip(1));
    v = at::complex(v, -v);
  }

  // One process, float64 (complex128).
  const auto ref_dtype = at::isComplexType(c.dtype) ? at::kComplexDouble : at::kDouble;
  at::Tensor ra = a.to(ref_dtype).clone().requires_grad_();
  at::Tensor rb = b.to(ref_dtype).clone().requires_grad_();
  at::Tensor rh0 = h0.to(ref_dtype).clone().requires_grad_();
  auto [ref_h, ref_last] = reference_scan(ra, rb, c.with_h0 ? rh0 : at::Tensor(), c.reverse);
  const double vsum = P * (P + 1) / 2.0;
  at::Tensor ref_loss = at::real((ref_h * w.to(ref_dtype)).sum() + (ref_last * v.to(ref_dtype)).sum() * vsum);
  ref_loss.backward();

  // Sequence parallel: this rank's slice, in the tested dtype.
  at::Tensor sa = a.narrow(1, start, len[r]).to(c.dtype).clone().requires_grad_();
  at::Tensor sb = b.narrow(1, start, len[r]).to(c.dtype).clone().requires_grad_();
  at::Tensor sh0 = h0.to(c.dtype).clone().requires_grad_();
  SpOptions options;
  options.algo = c.algo;
  auto [h, h_last] = scan(sa, sb, c.with_h0 ? std::optional<at::Tensor>(sh0) : std::nullopt,
                          c.reverse, group, options);
  at::Tensor loss = at::real((h * w.narrow(1, start, len[r]).to(c.dtype)).sum() +
                             (h_last * v.to(c.dtype)).sum() * (r + 1.0));
  ASSERT_TRUE(h.requires_grad() && h_last.requires_grad()) << "outputs are not differentiable";
  loss.backward();
  ASSERT_TRUE(sa.grad().defined() && sb.grad().defined()) << "no gradient reached a or b";

  const double tol = (c.dtype == at::kDouble || c.dtype == at::kComplexDouble) ? 1e-12 : 2e-5;
  auto close = [&](const at::Tensor& got, const at::Tensor& want, const char* what) {
    ASSERT_EQ(got.sizes(), want.sizes()) << what;
    if (got.numel() == 0) return;
    const double err = (got.to(ref_dtype) - want).abs().max().item<double>();
    const double scale = std::max(1.0, want.abs().max().item<double>());
    EXPECT_LE(err, tol * scale) << what << " on rank " << r << ": max error " << err;
  };
  close(h, ref_h.detach().narrow(1, start, len[r]), "h");
  close(h_last, ref_last.detach(), "h_last");
  close(sa.grad(), ra.grad().narrow(1, start, len[r]), "grad_a");
  close(sb.grad(), rb.grad().narrow(1, start, len[r]), "grad_b");
  if (c.with_h0) {
    const int first = c.reverse ? P - 1 : 0;
    if (r == first) {
      close(sh0.grad(), rh0.grad(), "grad_h0");
    } else {
      EXPECT_TRUE(at::equal(sh0.grad(), at::zeros_like(sh0))) << "grad_h0 off the first rank";
    }
  }
}

std::vector<Case> sp_cases() {
  std::vector<Case> cases;
  for (Split split : {Split::kEven, Split::kUneven, Split::kEmptySlices})
    for (bool reverse : {false, true})
      for (ExchangeAlgo algo : {ExchangeAlgo::kTree, ExchangeAlgo::kAllGather, ExchangeAlgo::kExscan,
                                ExchangeAlgo::kRing})
        cases.push_back({split, reverse, /*with_h0=*/split != Split::kEven, algo, at::kDouble});
  cases.push_back({Split::kUneven, false, false, ExchangeAlgo::kAuto, at::kDouble});
  cases.push_back({Split::kUneven, false, true, ExchangeAlgo::kAuto, at::kFloat});
  cases.push_back({Split::kEmptySlices, true, true, ExchangeAlgo::kTree, at::kFloat});
  cases.push_back({Split::kUneven, false, true, ExchangeAlgo::kTree, at::kComplexFloat});
  cases.push_back({Split::kUneven, true, true, ExchangeAlgo::kAllGather, at::kComplexFloat});
  // The Blelloch schedule, reachable through SpOptions since the options take comm's type.
  cases.push_back({Split::kEmptySlices, false, true, ExchangeAlgo::kBlelloch, at::kDouble});
  cases.push_back({Split::kUneven, true, true, ExchangeAlgo::kBlelloch, at::kDouble});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Slices, SpScan, testing::ValuesIn(sp_cases()), case_name);

TEST(SpScanChecks, RanksThatDisagreeOnChannelsAllThrow) {
  auto group = std::make_shared<MpiCommunicator>();
  if (group->size() < 2) GTEST_SKIP() << "needs two ranks";
  const int64_t channels = group->rank() == 1 ? 5 : 4;
  at::Tensor a = torch::full({1, 3, channels}, 0.5, at::kDouble);
  at::Tensor b = torch::ones({1, 3, channels}, at::kDouble);
  try {
    scan(a, b, std::nullopt, false, group);
    FAIL() << "no error on rank " << group->rank();
  } catch (const c10::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("disagree"), std::string::npos) << what;
    EXPECT_NE(what.find("rank 1"), std::string::npos) << what;
  }
}

TEST(SpScanChecks, RanksThatDisagreeOnDtypeAllThrow) {
  auto group = std::make_shared<MpiCommunicator>();
  if (group->size() < 2) GTEST_SKIP() << "needs two ranks";
  const auto dtype = group->rank() == group->size() - 1 ? at::kFloat : at::kDouble;
  at::Tensor a = torch::full({1, 3, 4}, 0.5, dtype);
  at::Tensor b = torch::ones({1, 3, 4}, dtype);
  EXPECT_THROW(scan(a, b, std::nullopt, false, group), c10::Error);
}

}  // namespace
}  // namespace seqpar::sp
