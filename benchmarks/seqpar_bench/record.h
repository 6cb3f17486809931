// Result records of seqpar-bench (schema "seqpar-bench/1", docs/benchmarks.md): one JSON object
// per measured case with the median and spread of its repeats, the alpha-beta prediction where
// the case has one, and the environment that produced it (commit, build options, device,
// world and sp sizes, library versions, injected network emulation), so that records from
// different machines and commits can be merged and compared (benchmarks/bench_results.py).
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace seqpar::comm {
class Communicator;
}

namespace seqpar::bench {

// Median, min and max of repeated timings (seconds).
struct Timing {
  double median = 0, min = 0, max = 0;
  int repeats = 0;
};
Timing summarize(std::vector<double> seconds);

struct Record {
  std::string bench;
  nlohmann::json cas = nlohmann::json::object();  // "case"
  Timing timing;
  std::optional<double> predicted, bytes_moved, roofline_gbps;
  nlohmann::json extra = nlohmann::json::object();  // bench-specific figures (kept as "extra")
};

// The environment block of every record. comm may be null (single process).
nlohmann::json environment(const comm::Communicator* world, int sp_size);

// The kernel's transparent-huge-page mode and PyTorch's THP_MEM_ALLOC_ENABLE, e.g.
// "madvise, THP_MEM_ALLOC_ENABLE unset": where PyTorch places large tensors, which moved the
// CPU scan's figures by up to 1.6x on one VM (docs/cpu_kernels.md).
std::string huge_pages();

nlohmann::json to_json(const Record& r, const nlohmann::json& env);

// Collects records; rank 0 writes {"schema": "seqpar-bench/1", "records": [...]}.
class RecordFile {
 public:
  explicit RecordFile(nlohmann::json env) : env_(std::move(env)) {}
  void add(const Record& r) { records_.push_back(to_json(r, env_)); }
  void write(const std::string& path) const;  // no-op for an empty path
  size_t size() const { return records_.size(); }

 private:
  nlohmann::json env_;
  std::vector<nlohmann::json> records_;
};

// One line per finished case with the time left, estimated from the cases done so far
// ("[3/12] exchange tree diagonal 4096 B: 41.2 us | ~0m12s left").
class Progress {
 public:
  Progress(int total, bool enabled) : total_(total), enabled_(enabled), start_(Clock::now()) {}
  void done(const std::string& what);

 private:
  using Clock = std::chrono::steady_clock;
  int total_, count_ = 0;
  bool enabled_;
  Clock::time_point start_;
};

}  // namespace seqpar::bench
