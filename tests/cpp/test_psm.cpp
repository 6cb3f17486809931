// The prefix-scannable-model scans (seqpar/psm.h) on one process, against independent
// references, with aggregations that are not associative:
// - static_scan equals the textbook in-place Blelloch scan over an array padded to a power of
//   two (values and gradients), for every n from 1 to 37 and with an entering prefix;
// - the BinaryCounter's prefixes equal static_scan's, its roots are one per set bit of the count
//   and its Agg calls stay under two per chunk; static_scan makes O(log n) Agg calls;
// - with the affine monoid as Agg, the prefixes equal seqpar::scan's states (the scan op);
// - bad arguments give errors that name them.
#include <gtest/gtest.h>
#include <seqpar/psm.h>
#include <seqpar/scan.h>
#include <torch/torch.h>

#include <bitset>
#include <cmath>

namespace seqpar::psm {
namespace {

// Agg(l, r) = tanh(l W1 + r W2 + 0.1) on (N, c, d) states: not associative.
struct Mixer {
  torch::Tensor w1, w2;
  explicit Mixer(int64_t d) {
    auto g = torch::arange(d * d, torch::kDouble).view({d, d});
    w1 = (torch::sin(g * 0.7) * 0.6).requires_grad_(true);
    w2 = (torch::cos(g * 1.3) * 0.6).requires_grad_(true);
  }
  Aggregate aggregate(int64_t* calls = nullptr) const {
    Aggregate a;
    auto w1_ = w1, w2_ = w2;
    a.fn = [w1_, w2_, calls](const torch::Tensor& l, const torch::Tensor& r) {
      if (calls) ++*calls;
      return torch::tanh(torch::matmul(l, w1_) + torch::matmul(r, w2_) + 0.1);
    };
    a.parameters = {w1, w2};
    return a;
  }
};

torch::Tensor chunk_states(int64_t batch, int64_t n, int64_t c, int64_t d, double seed) {
  return torch::sin(torch::arange(batch * n * c * d, torch::kDouble).view({batch, n, c, d}) * 0.31 +
                    seed);
}

// The textbook in-place scan over one padded array per batch row, item by item (no batching).
// entering: the root's prefix (the identity when undefined).
std::vector<std::optional<torch::Tensor>> textbook(const torch::Tensor& chunks, const Aggregate& agg,
                                                   const torch::Tensor& entering = {}) {
  const int64_t n = chunks.size(1);
  int64_t N = 1;
  while (N < n) N *= 2;
  std::vector<std::optional<torch::Tensor>> a(N);
  for (int64_t i = 0; i < n; ++i) a[i] = chunks.select(1, i);
  auto combine = [&](const std::optional<torch::Tensor>& l,
                     const std::optional<torch::Tensor>& r) -> std::optional<torch::Tensor> {
    if (!l) return r;
    if (!r) return l;
    return agg(*l, *r);
  };
  for (int64_t d = 1; d < N; d *= 2)
    for (int64_t i = 0; i < N; i += 2 * d) a[i + 2 * d - 1] = combine(a[i + d - 1], a[i + 2 * d - 1]);
  a[N - 1] = entering.defined() ? std::optional<torch::Tensor>(entering) : std::nullopt;
  for (int64_t d = N / 2; d >= 1; d /= 2) {
    for (int64_t i = 0; i < N; i += 2 * d) {
      auto t = a[i + d - 1];
      a[i + d - 1] = a[i + 2 * d - 1];
      a[i + 2 * d - 1] = combine(a[i + 2 * d - 1], t);
    }
  }
  a.resize(n);
  return a;
}

TEST(PsmStaticScan, EqualsTheTextbookScanForEveryN) {
  Mixer mixer(4);
  for (int64_t n = 1; n <= 37; ++n) {
    const torch::Tensor chunks = chunk_states(2, n, 3, 4, 0.1 * n);
    int64_t calls = 0;
    const Prefixes got = static_scan(chunks, mixer.aggregate(&calls));
    const auto want = textbook(chunks, mixer.aggregate());
    ASSERT_EQ(got.states.sizes(), chunks.sizes());
    EXPECT_TRUE(got.first_is_identity);
    EXPECT_FALSE(want[0].has_value());
    EXPECT_TRUE(torch::equal(got.states.select(1, 0), torch::zeros_like(chunks.select(1, 0))));
    for (int64_t i = 1; i < n; ++i) {
      ASSERT_TRUE(want[i].has_value());
      EXPECT_TRUE(torch::allclose(got.states.select(1, i), *want[i], 1e-13, 1e-13))
          << "n=" << n << " chunk " << i;
    }
    const int64_t levels = static_cast<int64_t>(std::ceil(std::log2(static_cast<double>(n))));
    EXPECT_LE(calls, std::max<int64_t>(0, 2 * levels - 1)) << "n=" << n;
  }
}

TEST(PsmStaticScan, EnteringPrefixIsCombinedFirst) {
  Mixer mixer(4);
  for (int64_t n : {1, 2, 5, 8, 13}) {
    const torch::Tensor chunks = chunk_states(2, n, 3, 4, 0.5);
    const torch::Tensor entering = chunk_states(2, 1, 3, 4, 2.0).select(1, 0);
    const Prefixes got = static_scan(chunks, mixer.aggregate(), entering);
    const auto want = textbook(chunks, mixer.aggregate(), entering);
    EXPECT_FALSE(got.first_is_identity);
    for (int64_t i = 0; i < n; ++i)
      EXPECT_TRUE(torch::allclose(got.states.select(1, i), *want[i], 1e-13, 1e-13))
          << "n=" << n << " chunk " << i;
  }
}

TEST(PsmStaticScan, GradientsEqualAutogradThroughTheTextbookScan) {
  for (int64_t n : {1, 6, 16, 21}) {
    Mixer mixer(4);
    const torch::Tensor base = chunk_states(2, n, 3, 4, 0.3);
    const torch::Tensor weight = torch::cos(chunk_states(2, n, 3, 4, 1.1) * 3.0);

    torch::Tensor x1 = base.clone().requires_grad_(true);
    const Prefixes got = static_scan(x1, mixer.aggregate());
    if (n > 1) (got.states.narrow(1, 1, n - 1) * weight.narrow(1, 1, n - 1)).sum().backward();
    const torch::Tensor gx1 = x1.grad().defined() ? x1.grad() : torch::zeros_like(base);
    const torch::Tensor gw1 = mixer.w1.grad().defined() ? mixer.w1.grad().clone()
                                                        : torch::zeros_like(mixer.w1);

    Mixer ref(4);
    torch::Tensor x2 = base.clone().requires_grad_(true);
    const auto want = textbook(x2, ref.aggregate());
    torch::Tensor loss = torch::zeros({}, torch::kDouble);
    for (int64_t i = 1; i < n; ++i) loss = loss + (*want[i] * weight.select(1, i)).sum();
    if (n > 1) loss.backward();
    const torch::Tensor gx2 = x2.grad().defined() ? x2.grad() : torch::zeros_like(base);
    const torch::Tensor gw2 = ref.w1.grad().defined() ? ref.w1.grad() : torch::zeros_like(ref.w1);
    EXPECT_TRUE(torch::allclose(gx1, gx2, 1e-12, 1e-12)) << "n=" << n;
    EXPECT_TRUE(torch::allclose(gw1, gw2, 1e-12, 1e-12)) << "n=" << n;
  }
}

TEST(PsmBinaryCounter, PrefixesEqualTheStaticScan) {
  Mixer mixer(4);
  const int64_t n = 45;
  const torch::Tensor chunks = chunk_states(2, n, 3, 4, 0.7);
  const Prefixes want = static_scan(chunks, mixer.aggregate());
  int64_t calls = 0;
  BinaryCounter counter(mixer.aggregate(&calls));
  EXPECT_FALSE(counter.prefix().has_value());
  for (int64_t i = 0; i < n; ++i) {
    if (i > 0) {
      ASSERT_TRUE(counter.prefix().has_value());
      EXPECT_TRUE(torch::allclose(*counter.prefix(), want.states.select(1, i), 1e-13, 1e-13))
          << "chunk " << i;
    }
    counter.push(chunks.select(1, i));
    EXPECT_EQ(counter.chunks(), i + 1);
    EXPECT_EQ(counter.roots(), static_cast<int64_t>(std::bitset<64>(i + 1).count()));
    EXPECT_LE(counter.agg_calls(), 2 * (i + 1));
    EXPECT_EQ(calls, counter.agg_calls());
  }
  // Roots and folds of (2, 3, 4) float64 states: at most two tensors per set bit.
  EXPECT_LE(counter.stored_bytes(), 2 * counter.roots() * 2 * 3 * 4 * 8);
}

// The affine monoid (a, b) with Agg(earlier, later) = (a_l a_e, a_l b_e + b_l), states (N, 2, D):
// the prefix of chunk i (one step per chunk) is the state h_{i-1} of h_t = a_t h_{t-1} + b_t.
TEST(PsmStaticScan, AffineMonoidEqualsTheScanOp) {
  const int64_t B = 2, T = 1000, D = 5;
  torch::Tensor u = torch::rand({B, T, D}, torch::TensorOptions().dtype(torch::kDouble));
  torch::Tensor a = 0.9 + 0.1 * u;  // decays near 1
  a.select(2, 0).fill_(1.0);        // and a running sum
  torch::Tensor b = torch::randn({B, T, D}, torch::kDouble);
  Aggregate affine;
  affine.fn = [](const torch::Tensor& e, const torch::Tensor& l) {
    auto ae = e.select(1, 0), be = e.select(1, 1), al = l.select(1, 0), bl = l.select(1, 1);
    return torch::stack({al * ae, al * be + bl}, 1);
  };
  const Prefixes got = static_scan(torch::stack({a, b}, 2), affine);
  auto [h, last] = seqpar::scan(a, b, std::nullopt, false);
  EXPECT_TRUE(torch::allclose(got.states.narrow(1, 1, T - 1).select(2, 1), h.narrow(1, 0, T - 1),
                              1e-10, 1e-10));
}

TEST(PsmErrors, NameTheArgument) {
  Mixer mixer(4);
  try {
    static_scan(torch::zeros({3}, torch::kDouble), mixer.aggregate());
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("chunks must be (batch, n, ...)"), std::string::npos);
  }
  Aggregate bad;
  bad.fn = [](const torch::Tensor& l, const torch::Tensor&) { return l.sum(-1); };
  try {
    static_scan(chunk_states(1, 4, 3, 4, 0.0), bad);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Agg returned shape"), std::string::npos);
  }
  try {
    static_scan(chunk_states(1, 4, 3, 4, 0.0), mixer.aggregate(), torch::zeros({1, 2}, torch::kDouble));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("entering must be shaped like one chunk state"),
              std::string::npos);
  }
  BinaryCounter counter(mixer.aggregate());
  counter.push(torch::zeros({1, 3, 4}, torch::kDouble));
  EXPECT_THROW(counter.push(torch::zeros({1, 3, 5}, torch::kDouble)), c10::Error);
  EXPECT_THROW(BinaryCounter(Aggregate{}), c10::Error);
}

}  // namespace
}  // namespace seqpar::psm
