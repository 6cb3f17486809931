// Whether a scan call must give bitwise-reproducible results (the CUDA kernels' chained mode,
// docs/cuda.md "Determinism"): PyTorch's global switch (torch.use_deterministic_algorithms,
// at::globalContext().setDeterministicAlgorithms), or ScanOptions::deterministic for one call
// of the C++ API, which holds a DeterministicScope on the calling thread; the autograd node
// records the answer at forward time and restores it around its backward, which may run on
// another thread.
#pragma once

namespace seqpar::ops {

bool deterministic_requested();

class DeterministicScope {
 public:
  explicit DeterministicScope(bool on);
  ~DeterministicScope();
  DeterministicScope(const DeterministicScope&) = delete;
  DeterministicScope& operator=(const DeterministicScope&) = delete;

 private:
  bool previous_;
};

}  // namespace seqpar::ops
