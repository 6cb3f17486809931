// Exchange cost of matrix-state summaries across ranks (docs/sequence_parallel.md, "Matrix
// summaries"): the tree scan against all-gather-and-fold (what flash-linear-attention's context
// parallel and LASP-2 do) and the ring (LASP-1: the state handed rank to rank).
//
// Run under mpirun. Each rank holds one (M, E) summary of H heads, M (K x K) and E (K x V)
// float32, and computes the state entering it (comm::rank_entering_state) with each algorithm;
// printed is the median over repetitions (each after a barrier) of the slowest rank's time, next
// to the alpha-beta model's prediction with the fitted MPI parameters (comm::cost_model_for). Rank
// 0 then predicts the same exchange to P = 1024 with the MPI and the NCCL (NVLink) parameters and
// names the algorithm the automatic choice takes at each P. Writes JSON (--json PATH).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "seqpar/comm/mpi_communicator.h"
#include "seqpar/comm/rank_scan.h"

using namespace seqpar;
using clock_type = std::chrono::steady_clock;

namespace {

double median_slowest(comm::MpiCommunicator& c, int reps, const std::function<void()>& fn) {
  fn();
  fn();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    c.barrier();
    const auto t0 = clock_type::now();
    fn();
    double t = std::chrono::duration<double>(clock_type::now() - t0).count(), slowest = 0;
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, c.mpi_comm());
    times.push_back(slowest);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Shape {
  int64_t H, K, V;
};

}  // namespace

int main(int argc, char** argv) {
  std::string json_path = "matrix_exchange_bench.json";
  int reps = 20;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (arg == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--json PATH] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  comm::ensure_mpi_initialized();
  comm::MpiCommunicator group;
  const int P = group.size(), rank = group.rank();
  at::set_num_threads(1);
  const comm::RankScanAlgo algos[] = {comm::RankScanAlgo::kTree, comm::RankScanAlgo::kAllGather,
                                      comm::RankScanAlgo::kRing};
  const comm::CostModel mpi_model = comm::cost_model_for("mpi");
  const comm::CostModel nccl_model = comm::cost_model_for("nccl");
  // The arithmetic rate the model assumes, against one thread's matrix products here.
  double flops_here = 0;
  {
    const at::Tensor a = at::rand({16, 128, 128}), b = at::rand({16, 128, 128});
    at::matmul(a, b);
    const auto t0 = clock_type::now();
    for (int i = 0; i < 20; ++i) at::matmul(a, b);
    flops_here = 20 * 2.0 * 16 * 128 * 128 * 128 /
                 std::chrono::duration<double>(clock_type::now() - t0).count();
  }
  if (rank == 0)
    std::printf("# matrix products here: %.1f GFLOP/s (one thread, 16 x 128x128 @ 128x128); the "
                "MPI model assumes %.1f\n", flops_here / 1e9, mpi_model.flops_per_s / 1e9);
  std::ostringstream json;
  json << "{\n  \"backend\": \"mpi\",\n  \"P\": " << P << ",\n  \"matmul_flops_per_s\": "
       << flops_here << ",\n  \"measured\": [\n";
  bool first = true;
  // 16 heads x 128 x (128 + 128) float32 = 2 MiB per summary (the example), and a
  // 4-head, 64-dim model's 128 KiB.
  for (const Shape s : {Shape{16, 128, 128}, Shape{4, 64, 64}}) {
    const at::Tensor M = at::eye(s.K, at::kFloat).expand({1, s.H, s.K, s.K}).contiguous() * 0.5;
    const at::Tensor E = at::rand({1, s.H, s.K, s.V}, at::kFloat);
    const comm::ExchangeSize size = comm::matrix_summary().exchange_size({M, E});
    const double m = size.summary_bytes, st = size.state_bytes;
    if (rank == 0)
      std::printf("# P=%d, H=%lld K=%lld V=%lld: summary %.0f KiB, state %.0f KiB; median of the "
                  "slowest rank; model: fitted MPI alpha-beta plus matrix products at the model's flop rate\n%-10s %12s %12s\n",
                  P, static_cast<long long>(s.H), static_cast<long long>(s.K),
                  static_cast<long long>(s.V), m / 1024, st / 1024, "algo", "time_us", "model_us");
    for (const auto algo : algos) {
      const double t = median_slowest(group, reps, [&] {
        comm::rank_entering_state(group, comm::matrix_summary(), {M, E}, false, algo);
      });
      const double model = comm::predict_rank_scan_seconds(algo, P, size, mpi_model);
      if (rank == 0) {
        std::printf("%-10s %12.1f %12.1f\n", comm::rank_scan_algo_name(algo), t * 1e6, model * 1e6);
        json << (first ? "" : ",\n") << "    {\"H\": " << s.H << ", \"K\": " << s.K
             << ", \"V\": " << s.V << ", \"algo\": \"" << comm::rank_scan_algo_name(algo)
             << "\", \"summary_bytes\": " << m << ", \"time_s\": " << t
             << ", \"model_s\": " << model << "}";
        first = false;
      }
    }
  }
  json << "\n  ],\n  \"predicted\": [\n";
  if (rank == 0) {
    const at::Tensor M = at::empty({16, 128, 128}), E = at::empty({16, 128, 128});
    const comm::ExchangeSize size = comm::matrix_summary().exchange_size({M, E});
    first = true;
    for (const auto& [name, model] : {std::pair<const char*, comm::CostModel>{"mpi", mpi_model},
                                      {"nccl", nccl_model}}) {
      std::printf("# predicted, 2 MiB summaries, %s parameters (us)\n%6s %10s %10s %10s  %s\n",
                  name, "P", "tree", "allgather", "ring", "auto picks");
      for (int p : {2, 3, 4, 5, 8, 16, 64, 256, 1024}) {
        double t[3];
        int best = 0;
        for (int i = 0; i < 3; ++i) {
          t[i] = comm::predict_rank_scan_seconds(algos[i], p, size, model);
          if (t[i] < t[best]) best = i;
        }
        std::printf("%6d %10.1f %10.1f %10.1f  %s\n", p, t[0] * 1e6, t[1] * 1e6, t[2] * 1e6,
                    comm::rank_scan_algo_name(algos[best]));
        json << (first ? "" : ",\n") << "    {\"params\": \"" << name << "\", \"P\": " << p
             << ", \"tree_s\": " << t[0] << ", \"allgather_s\": " << t[1] << ", \"ring_s\": "
             << t[2] << ", \"auto\": \"" << comm::rank_scan_algo_name(algos[best]) << "\"}";
        first = false;
      }
    }
    json << "\n  ]\n}\n";
    std::ofstream(json_path) << json.str();
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
