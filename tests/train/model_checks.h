// What the model tests (test_train_model's files) share: comparing tensors within a tolerance
// of their scale, the message of an expected error, and a local backend that counts its scans.
#pragma once

#include <seqpar/models/manifold_scan.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <optional>
#include <string>

namespace model_checks {

inline double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

// max |x - y| within tolerance of x's scale.
inline void expect_close(const at::Tensor& x, const at::Tensor& y, double tolerance,
                         const std::string& what) {
  const double err = max_abs(x - y), scale = std::max(1e-30, max_abs(x));
  EXPECT_LE(err, tolerance * scale) << what << ": error " << err << ", scale " << scale;
}

// The message of what f throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// local_backend() counting its scan and block_scan calls; on_block_scan (optional) sees each
// block scan's A and lower_triangular. backend() refers to this object, which must outlive it.
struct CountingBackend {
  int scans = 0, block_scans = 0;
  std::function<void(const at::Tensor& A, bool lower_triangular)> on_block_scan;

  seqpar::models::SequenceBackend backend() {
    auto b = seqpar::models::local_backend();
    auto scan = b.scan;
    auto block_scan = b.block_scan;
    b.scan = [this, scan](const at::Tensor& a, const at::Tensor& x,
                          const std::optional<at::Tensor>& h0,
                          const seqpar::models::Documents& documents) {
      ++scans;
      return scan(a, x, h0, documents);
    };
    b.block_scan = [this, block_scan](const at::Tensor& A, const at::Tensor& x,
                                      const std::optional<at::Tensor>& h0, bool lower) {
      ++block_scans;
      if (on_block_scan) on_block_scan(A, lower);
      return block_scan(A, x, h0, lower);
    };
    return b;
  }
};

}  // namespace model_checks
