// seqpar-bench train_step: training throughput of the byte LM against sequence length, with
// the share of step time spent in scans, matmuls and communication. Replaces train_bench with
// the same method, so its figures stay comparable:
//   - All ranks form one sp group. For each T = 2^k (--min_log2 .. --max_log2) a full
//     optimizer step (forward, backward, gradient all-reduce, clip, AdamW) is timed with a
//     monotonic clock between barriers: one warm-up step, then --reps steps (default 3);
//     tokens/s = T / median step time (the whole group's throughput).
//   - Time shares (rank 0's) come from LibTorch's RecordFunction callbacks: the outermost
//     seqpar::* op (the scans, forward and backward) and the outermost aten matmul-family op
//     (mm, addmm, bmm, matmul, linear) are timed; communication is timed by wrapping the
//     Communicator, and the communication inside an sp scan is moved from "scan" to "comm".
//     "other" is the rest (elementwise ops, norms, the loss, the optimizer). --ops prints the
//     15 costliest outermost ops per length.
//   - Peak memory is the process's peak resident set size (getrusage), which only grows, so
//     lengths run in increasing order; the value at T is the peak of the runs up to T.
//   - Freed host memory is kept for reuse as seqpar-train does (--glibc_defaults: not).
//   - The exchange is the tree unless SEQPAR_SP_ALGO says otherwise: MPI_Exscan needs the MPI
//     communicator itself, not the timing wrapper.
#include <ATen/record_function.h>
#include <boost/program_options.hpp>
#include <seqpar/train/trainer.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <sys/resource.h>

#include "bench.h"
#include "seqpar/comm/bootstrap.h"
#include "seqpar/comm/forwarding_communicator.h"

namespace po = boost::program_options;

namespace seqpar::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Totals {
  double scan = 0, matmul = 0, comm = 0, comm_in_scan = 0;
};
Totals g_totals;
thread_local int t_scan_depth = 0, t_matmul_depth = 0, t_any_depth = 0;
thread_local Clock::time_point t_scan_start, t_matmul_start, t_any_start;
bool g_per_op = false;                       // --ops: time per outermost op name
std::map<std::string, double> g_op_seconds;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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
  if (g_per_op && --t_any_depth == 0) g_op_seconds[name] += since(t_any_start);
  if (std::strstr(name, "seqpar") != nullptr) {
    if (--t_scan_depth == 0) g_totals.scan += since(t_scan_start);
  } else if (is_matmul(name)) {
    if (--t_matmul_depth == 0) g_totals.matmul += since(t_matmul_start);
  }
}

// Forwards every call to `inner` and adds its wall time to g_totals.comm.
class TimedCommunicator final : public comm::ForwardingCommunicator {
 public:
  explicit TimedCommunicator(std::shared_ptr<comm::Communicator> inner)
      : ForwardingCommunicator(std::move(inner), "TimedCommunicator") {}

 private:
  void around(Call, bool, c10::function_ref<void()> forward) override {
    const auto t0 = Clock::now();
    forward();
    const double s = since(t0);
    g_totals.comm += s;
    if (t_scan_depth > 0) g_totals.comm_in_scan += s;
  }
  std::unique_ptr<comm::Communicator> wrap(std::shared_ptr<comm::Communicator> inner) override {
    return std::make_unique<TimedCommunicator>(std::move(inner));
  }
};

long peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;  // KiB on Linux
}

}  // namespace

int run_train_step(const CommonOptions& common, const std::vector<std::string>& args,
                   std::shared_ptr<comm::Communicator> raw_world, RecordFile& out) {
  int min_log2 = 12, max_log2 = 17;
  bool glibc_defaults = false;
  train::TrainOptions o;  // train_bench's configuration
  o.d_model = 64;
  o.layers = 2;
  o.heads = 4;
  o.mlp_hidden = 128;
  o.threads = 1;
  o.steps = 1000;
  o.warmup = 1;
  o.val_tokens = 256;
  po::options_description desc("seqpar-bench train_step options");
  desc.add_options()
      ("min_log2", po::value(&min_log2)->default_value(min_log2),
       "shortest sequence: 2^this tokens (--quick: 10)")
      ("max_log2", po::value(&max_log2)->default_value(max_log2),
       "longest sequence: 2^this tokens (--quick: 11)")
      ("d_model", po::value(&o.d_model)->default_value(o.d_model), "model width")
      ("layers", po::value(&o.layers)->default_value(o.layers), "layers")
      ("mlp_hidden", po::value(&o.mlp_hidden)->default_value(o.mlp_hidden), "MLP hidden width")
      ("threads", po::value(&o.threads)->default_value(o.threads), "intra-op threads per rank")
      ("ops", po::bool_switch(&g_per_op), "print the 15 costliest outermost ops per length (rank 0)")
      ("glibc_defaults", po::bool_switch(&glibc_defaults),
       "glibc's malloc defaults (no keep_freed_host_memory)");
  const po::variables_map vm = parse_options(desc, args);
  if (common.quick && vm["min_log2"].defaulted()) min_log2 = 10;
  if (common.quick && vm["max_log2"].defaulted()) max_log2 = 11;
  if (min_log2 < 1 || min_log2 > max_log2 || max_log2 > 40)
    throw std::invalid_argument("need 1 <= --min_log2 <= --max_log2 <= 40");
  const int reps = common.reps_or(3, 1);
  if (!glibc_defaults) train::keep_freed_host_memory();
  setenv("SEQPAR_SP_ALGO", "tree", /*overwrite=*/0);
  const std::string sp_algo = std::getenv("SEQPAR_SP_ALGO");

  auto world = std::make_shared<TimedCommunicator>(raw_world);
  const int P = world->size();
  const bool rank0 = world->rank() == 0;
  const comm::Grid grid = comm::make_grid(world, P);
  g_totals = {};
  struct Callback {  // removed however the loop ends
    at::CallbackHandle handle;
    ~Callback() { at::removeCallback(handle); }
  } callback{at::addGlobalCallback(at::RecordFunctionCallback(on_enter, on_exit).needsInputs(false))};

  if (rank0)
    std::printf("%10s %12s %10s %10s %7s %7s %7s %7s\n", "seq_len", "tokens/s", "step_s", "peak_MB", "scan%",
                "matmul%", "comm%", "other%");
  Progress progress(max_log2 - min_log2 + 1, common.progress && rank0);
  for (int k = min_log2; k <= max_log2; ++k) {
    o.seq_len = int64_t{1} << k;
    train::Trainer trainer(o, grid, nullptr);
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
      if (r > 0) seconds.push_back(since(t0));
    }
    double total = 0;
    for (double s : seconds) total += s;
    const double comm_s = g_totals.comm - at_start.comm;
    const double scan_s = (g_totals.scan - at_start.scan) - (g_totals.comm_in_scan - at_start.comm_in_scan);
    const double matmul_s = g_totals.matmul - at_start.matmul;
    Record rec;
    rec.bench = "train_step";
    rec.cas = {{"seq_len", o.seq_len}, {"model", seqpar::models::model_kind_name(o.model)}, {"P", P}, {"d_model", o.d_model},
               {"layers", o.layers}, {"heads", o.heads}, {"mlp_hidden", o.mlp_hidden}, {"threads", o.threads},
               {"keep_freed_memory", !glibc_defaults}, {"sp_algo", sp_algo}};
    rec.timing = summarize(seconds);
    const double scan = scan_s / total, matmul = matmul_s / total, comm = comm_s / total;
    const double tokens_per_s = o.seq_len / rec.timing.median;
    const double other = 1 - scan - matmul - comm;
    rec.extra = {{"tokens_per_s", tokens_per_s},
                 {"shares", {{"scan", scan}, {"matmul", matmul}, {"comm", comm}, {"other", other}}},
                 {"peak_rss_mib", peak_rss_mib()}};
    out.add(rec);
    if (rank0) {
      std::printf("%10lld %12.0f %10.3f %10ld %7.1f %7.1f %7.1f %7.1f\n", static_cast<long long>(o.seq_len),
                  tokens_per_s, rec.timing.median, peak_rss_mib(), 100 * scan, 100 * matmul, 100 * comm,
                  100 * other);
      if (g_per_op) {
        std::vector<std::pair<double, std::string>> ops;
        for (const auto& [name, sec] : g_op_seconds) ops.push_back({sec, name});
        std::sort(ops.rbegin(), ops.rend());
        for (size_t i = 0; i < std::min<size_t>(ops.size(), 15); ++i)
          std::printf("    %8.3f s  %s\n", ops[i].first, ops[i].second.c_str());
      }
      std::fflush(stdout);
    }
    g_op_seconds.clear();
    std::ostringstream what;
    what << "train_step T=" << o.seq_len << " P=" << P << ": " << rec.timing.median << " s per step";
    progress.done(what.str());
  }
  return 0;
}

}  // namespace seqpar::bench
