// Benchmark of the sequence-parallel exchange and of the whole sp scan (issue 4, item 7).
//
// Run under mpirun. Part 1 times rank_exclusive_scan for each algorithm (tree, exscan,
// allgather) and summary size m = 2 * D * 4 bytes (float32 A and B), reporting the median over
// repetitions (each preceded by a barrier) of the slowest rank, with
//   algbw = m / t                    (nccl-tests: the data one rank contributes over the time)
//   busbw = bytes each rank receives / t: tree and exscan ceil(log2 P) * m, allgather (P-1) * m.
// Part 2 times seqpar::sp::scan (forward, no grad) on T_local x D per rank against the local
// scan alone and the summary pass, i.e. what the cross-rank exchange adds.
// Writes one JSON document (--json PATH) that benchmarks/sp_cost_model.py fits.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/comm/rank_scan.h"
#include "seqpar/scan.h"
#include "seqpar/sp.h"

using namespace seqpar;
using clock_type = std::chrono::steady_clock;

namespace {

// Median over repetitions of the slowest rank's time (seconds).
template <typename Fn>
double time_collective(comm::MpiCommunicator& c, int warmup, double min_seconds, int min_reps,
                       Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  // The stop rule uses only the all-reduced times, so every rank runs the same repetitions.
  std::vector<double> times;
  double total = 0;
  while (static_cast<int>(times.size()) < min_reps || total < min_seconds) {
    c.barrier();
    const auto t0 = clock_type::now();
    fn();
    double t = std::chrono::duration<double>(clock_type::now() - t0).count();
    double slowest = 0;
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, c.mpi_comm());
    times.push_back(slowest);
    total += slowest;
    if (times.size() >= 2000) break;
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Evicts the summaries and the slice from cache between repetitions of the sp scan part.
void flush_cache() {
  static std::vector<char> junk(64 << 20);
  for (std::size_t i = 0; i < junk.size(); i += 64) junk[i] = static_cast<char>(junk[i] + 1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path = "sp_exchange_bench.json";
  int64_t t_local = 4096, channels = 1024;
  double min_seconds = 0.2;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (arg == "--t-local" && i + 1 < argc) t_local = std::stoll(argv[++i]);
    else if (arg == "--channels" && i + 1 < argc) channels = std::stoll(argv[++i]);
    else if (arg == "--min-seconds" && i + 1 < argc) min_seconds = std::stod(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--json PATH] [--t-local N] [--channels D] [--min-seconds S]\n", argv[0]);
      return 2;
    }
  }
  comm::ensure_mpi_initialized();
  auto group = std::make_shared<comm::MpiCommunicator>();
  const int P = group->size(), rank = group->rank();
  at::set_num_threads(1);
  std::ostringstream json;
  json << "{\n  \"backend\": \"mpi\",\n  \"library\": \"" << comm::MpiCommunicator::library_version()
       << "\",\n  \"P\": " << P << ",\n  \"exchange\": [\n";
  if (rank == 0)
    std::printf("# exchange: P=%d, median of the slowest rank\n%-10s %12s %12s %12s %12s\n", P,
                "algo", "m_bytes", "time_us", "algbw_GB/s", "busbw_GB/s");
  const double rounds = P > 1 ? std::ceil(std::log2(static_cast<double>(P))) : 0.0;
  bool first = true;
  for (const char* name : {"tree", "exscan", "allgather"}) {
    const auto algo = comm::parse_rank_scan_algo(name);
    for (int64_t D : {1, 16, 256, 4096, 65536, 1 << 20}) {
      at::Tensor A = at::rand({D}, at::kFloat), B = at::rand({D}, at::kFloat);
      const double m = 2.0 * static_cast<double>(D) * 4.0;
      const int reps = D >= (1 << 20) ? 5 : 20;
      const double t = time_collective(*group, 3, min_seconds, reps, [&] {
        comm::rank_exclusive_scan(*group, A, B, /*reverse=*/false, algo);
      });
      const double received = std::string(name) == "allgather" ? (P - 1) * m : rounds * m;
      if (rank == 0) {
        std::printf("%-10s %12.0f %12.2f %12.3f %12.3f\n", name, m, t * 1e6, m / t / 1e9,
                    received / t / 1e9);
        json << (first ? "" : ",\n") << "    {\"algo\": \"" << name << "\", \"D\": " << D
             << ", \"m_bytes\": " << m << ", \"time_s\": " << t << ", \"algbw_GBps\": "
             << m / t / 1e9 << ", \"busbw_GBps\": " << received / t / 1e9 << "}";
        first = false;
      }
    }
  }
  json << "\n  ],\n";

  // Part 2: the whole sp scan against its parts. batch 1, T_local x channels per rank.
  at::Tensor a = 0.5 + 0.5 * at::rand({1, t_local, channels}, at::kFloat);
  at::Tensor b = at::rand({1, t_local, channels}, at::kFloat);
  auto timed = [&](auto&& fn) {
    return time_collective(*group, 2, min_seconds, 10, [&] {
      flush_cache();
      fn();
    });
  };
  torch::NoGradGuard no_grad;
  const double flush_s = timed([] {});
  const double local_s = timed([&] { seqpar::scan(a, b); }) - flush_s;
  const double summary_s = timed([&] { seqpar::scan_summary(a, b); }) - flush_s;
  const double sp_s = timed([&] { sp::scan(a, b, std::nullopt, false, group); }) - flush_s;
  const double bytes = 12.0 * static_cast<double>(t_local * channels);  // read a, b; write h
  if (rank == 0) {
    std::printf("# sp scan: P=%d, T_local=%lld, channels=%lld (float32, batch 1)\n", P,
                static_cast<long long>(t_local), static_cast<long long>(channels));
    std::printf("local scan %.3f ms (%.2f GB/s = 12 B/elem / t), summary %.3f ms, sp scan %.3f ms,"
                " sp - local - summary = %.3f ms (%.1f%% of the local scan)\n",
                local_s * 1e3, bytes / local_s / 1e9, summary_s * 1e3, sp_s * 1e3,
                (sp_s - local_s - summary_s) * 1e3, 100.0 * (sp_s - local_s - summary_s) / local_s);
  }
  json << "  \"sp_scan\": {\"T_local\": " << t_local << ", \"channels\": " << channels
       << ", \"local_scan_s\": " << local_s << ", \"summary_s\": " << summary_s
       << ", \"sp_scan_s\": " << sp_s << "}\n}\n";
  if (rank == 0) {
    std::ofstream(json_path) << json.str();
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
