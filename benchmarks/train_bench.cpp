// train_bench: training throughput of the manifold-scan byte LM against sequence length and
// sp size, with the share of step time spent in scans, matmuls and communication.
//
//   mpirun -np P build/bin/train_bench --min_log2 12 --max_log2 20 --json runs/train_bench_pP.json
//
// One process per sp rank (all ranks form one sp group). For each T = 2^k a full optimizer
// step (forward, backward, gradient all-reduce, clip, AdamW) is timed with a monotonic clock:
// one warm-up step, then `reps` steps, median reported. tokens/s = T / median step time (the
// whole group's throughput).
//
// Time shares come from LibTorch's RecordFunction callbacks on rank 0: the outermost
// seqpar::* op (the scans, forward and backward) and the outermost aten matmul-family op
// (mm, addmm, bmm, matmul, linear) are timed; communication is timed by wrapping the
// Communicator, and the communication that happens inside an sp scan is moved from "scan" to
// "comm". "other" is the rest (elementwise ops, norms, the loss, the optimizer).
// Peak memory is the process's peak resident set size (getrusage), which only grows, so
// lengths are run in increasing order; the value at T is the peak of runs up to T.
#include <seqpar/comm/communicator.h>
#include <seqpar/train/trainer.h>

#include <ATen/record_function.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sys/resource.h>

namespace {

using Clock = std::chrono::steady_clock;
namespace comm = seqpar::comm;

struct Totals {
  double scan = 0, matmul = 0, comm = 0, comm_in_scan = 0;
};
Totals g_totals;
thread_local int t_scan_depth = 0, t_matmul_depth = 0, t_any_depth = 0;
thread_local Clock::time_point t_any_start;
// --ops: time per outermost op name (what "other" is made of).
bool g_per_op = false;
std::map<std::string, double> g_op_seconds;
thread_local Clock::time_point t_scan_start, t_matmul_start;

bool is_matmul(const char* name) {
  for (const char* m : {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"})
    if (std::strcmp(name, m) == 0) return true;
  return false;
}

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  const char* name = fn.name();
  if (g_per_op && t_any_depth++ == 0) t_any_start = Clock::now();
  if (std::strstr(name, "seqpar") != nullptr) {
    if (t_scan_depth++ == 0) t_scan_start = Clock::now();
  } else if (is_matmul(name)) {
    if (t_matmul_depth++ == 0) t_matmul_start = Clock::now();
  }
  return nullptr;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext*) {
  const char* name = fn.name();
  if (g_per_op && --t_any_depth == 0)
    g_op_seconds[name] += std::chrono::duration<double>(Clock::now() - t_any_start).count();
  if (std::strstr(name, "seqpar") != nullptr) {
    if (--t_scan_depth == 0)
      g_totals.scan += std::chrono::duration<double>(Clock::now() - t_scan_start).count();
  } else if (is_matmul(name)) {
    if (--t_matmul_depth == 0)
      g_totals.matmul += std::chrono::duration<double>(Clock::now() - t_matmul_start).count();
  }
}

// Forwards every call to `inner` and adds its wall time to g_totals.comm.
class TimedCommunicator : public comm::Communicator {
 public:
  explicit TimedCommunicator(std::shared_ptr<comm::Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend_name() const override { return inner_->backend_name(); }
  void set_timeout(std::chrono::milliseconds t) override { inner_->set_timeout(t); }
  void send(comm::ConstBuffer b, int dst, int tag, comm::Stream s) override {
    timed([&] { inner_->send(b, dst, tag, s); });
  }
  void recv(comm::MutableBuffer b, int src, int tag, comm::Stream s) override {
    timed([&] { inner_->recv(b, src, tag, s); });
  }
  void send_recv(comm::ConstBuffer sb, int dst, comm::MutableBuffer rb, int src, int tag,
                 comm::Stream s) override {
    timed([&] { inner_->send_recv(sb, dst, rb, src, tag, s); });
  }
  void all_gather(comm::ConstBuffer sb, comm::MutableBuffer rb, comm::Stream s) override {
    timed([&] { inner_->all_gather(sb, rb, s); });
  }
  void all_reduce_sum(comm::MutableBuffer b, comm::Stream s) override {
    timed([&] { inner_->all_reduce_sum(b, s); });
  }
  void broadcast(comm::MutableBuffer b, int root, comm::Stream s) override {
    timed([&] { inner_->broadcast(b, root, s); });
  }
  void barrier() override { timed([&] { inner_->barrier(); }); }
  std::unique_ptr<comm::Communicator> split(int color, int key) override {
    return std::make_unique<TimedCommunicator>(std::shared_ptr<comm::Communicator>(inner_->split(color, key)));
  }

 private:
  template <typename F>
  void timed(F&& f) {
    const auto t0 = Clock::now();
    f();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    g_totals.comm += s;
    if (t_scan_depth > 0) g_totals.comm_in_scan += s;
  }
  std::shared_ptr<comm::Communicator> inner_;
};

long peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;
}

int arg_int(int argc, char** argv, const char* key, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], key) == 0) return std::atoi(argv[i + 1]);
  return fallback;
}
std::string arg_str(int argc, char** argv, const char* key, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], key) == 0) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  // As seqpar-train does by default (--keep_freed_memory); --glibc_defaults to compare.
  bool glibc_defaults = false;
  for (int i = 1; i < argc; ++i) glibc_defaults |= std::strcmp(argv[i], "--glibc_defaults") == 0;
  if (!glibc_defaults) seqpar::train::keep_freed_host_memory();
  const int min_log2 = arg_int(argc, argv, "--min_log2", 12);
  const int max_log2 = arg_int(argc, argv, "--max_log2", 17);
  const int reps = std::max(1, arg_int(argc, argv, "--reps", 3));
  const std::string json_path = arg_str(argc, argv, "--json", "");
  for (int i = 1; i < argc; ++i) g_per_op |= std::strcmp(argv[i], "--ops") == 0;

  seqpar::train::TrainOptions o;
  o.d_model = arg_int(argc, argv, "--d_model", 64);
  o.layers = arg_int(argc, argv, "--layers", 2);
  o.heads = 4;
  o.mlp_hidden = arg_int(argc, argv, "--mlp_hidden", 128);
  o.threads = arg_int(argc, argv, "--threads", 1);
  o.steps = 1000;
  o.warmup = 1;

  // The timing wrapper is not an MpiCommunicator, so the MPI_Exscan exchange (which needs
  // one) cannot run through it: use the tree exchange unless SEQPAR_SP_ALGO says otherwise.
  setenv("SEQPAR_SP_ALGO", "tree", /*overwrite=*/0);
  const std::string sp_algo = std::getenv("SEQPAR_SP_ALGO");
  auto raw_world = std::shared_ptr<comm::Communicator>(comm::make_world());
  auto world = std::make_shared<TimedCommunicator>(raw_world);
  const bool rank0 = world->rank() == 0;
  auto grid = comm::make_grid(world, world->size());
  auto callback = at::addGlobalCallback(
      at::RecordFunctionCallback(on_enter, on_exit).needsInputs(false));

  nlohmann::json report{{"benchmark", "train_bench"},
                        {"ranks", world->size()},
                        {"threads_per_rank", o.threads},
                        {"d_model", o.d_model},
                        {"layers", o.layers},
                        {"mlp_hidden", o.mlp_hidden},
                        {"reps", reps},
                        {"keep_freed_host_memory", !glibc_defaults},
                        {"sp_algo", sp_algo},
                        {"timing", "median of reps full optimizer steps after 1 warm-up step"},
                        {"results", nlohmann::json::array()}};
  if (rank0)
    std::printf("%10s %12s %10s %10s %7s %7s %7s %7s\n", "seq_len", "tokens/s", "step_s",
                "peak_MB", "scan%", "matmul%", "comm%", "other%");
  for (int k = min_log2; k <= max_log2; ++k) {
    o.seq_len = int64_t{1} << k;
    o.val_tokens = 256;
    seqpar::train::Trainer trainer(o, grid, nullptr);
    std::vector<double> seconds;
    Totals at_start;
    for (int r = 0; r <= reps; ++r) {
      if (r == 1) at_start = g_totals;  // shares over the timed steps only
      raw_world->barrier();
      const auto t0 = Clock::now();
      trainer.compute_gradients(r);
      torch::nn::utils::clip_grad_norm_(trainer.model()->parameters(), 1.0);
      trainer.optimizer().step();
      raw_world->barrier();
      if (r > 0) seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    double total = 0;
    for (double s : seconds) total += s;
    const double comm_s = g_totals.comm - at_start.comm;
    const double scan_s = (g_totals.scan - at_start.scan) - (g_totals.comm_in_scan - at_start.comm_in_scan);
    const double matmul_s = g_totals.matmul - at_start.matmul;
    auto share = [&](double s) { return 100.0 * s / total; };
    const double other = 100.0 - share(scan_s) - share(matmul_s) - share(comm_s);
    if (rank0) {
      std::printf("%10lld %12.0f %10.3f %10ld %7.1f %7.1f %7.1f %7.1f\n",
                  static_cast<long long>(o.seq_len), o.seq_len / median, median, peak_rss_mb(),
                  share(scan_s), share(matmul_s), share(comm_s), other);
      std::fflush(stdout);
    }
    if (rank0 && g_per_op) {
      std::vector<std::pair<double, std::string>> ops;
      for (const auto& [name, sec] : g_op_seconds) ops.push_back({sec, name});
      std::sort(ops.rbegin(), ops.rend());
      for (size_t i = 0; i < std::min<size_t>(ops.size(), 15); ++i)
        std::printf("    %8.3f s  %s\n", ops[i].first, ops[i].second.c_str());
      g_op_seconds.clear();
    }
    report["results"].push_back({{"seq_len", o.seq_len},
                                 {"tokens_per_s", o.seq_len / median},
                                 {"step_s_median", median},
                                 {"peak_rss_mb_rank0", peak_rss_mb()},
                                 {"share_pct", {{"scan", share(scan_s)},
                                                {"matmul", share(matmul_s)},
                                                {"comm", share(comm_s)},
                                                {"other", other}}}});
  }
  at::removeCallback(callback);
  if (rank0 && !json_path.empty()) {
    std::ofstream(json_path) << report.dump(2) << "\n";
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
