// CPU scan throughput: forward and backward GB/s of torch.ops.seqpar.scan / scan_backward, as
// a share of the triad bandwidth measured in the same run with the same thread count.
//
// Two figures per pass: "kernel" runs kernels/cpu on preallocated outputs (what the targets
// are stated for: the kernel's memory traffic against triad's); "op" calls the registered op,
// which also allocates its outputs, and on the CPU a fresh 64 MiB tensor costs page faults on
// first touch (PyTorch's CPU allocator does not cache large blocks).
//
// Bytes per element follow the roofline of docs/design.md section 1 (stream count x element size of --dtype):
// forward reads a, b and writes h (3 streams);
// backward reads a, h, grad_h and writes grad_a, grad_b (5 streams); triad a = b + s*c counts
// 3 streams (STREAM's convention, no write-allocate), computed by at::add_out. Each figure is the median of --reps
// timed repetitions after one warm-up, with a 64 MiB buffer touched between repetitions so
// no run starts from warm caches (the working sets are 4x larger than the L3 anyway).
//
// Baselines in the same run: a naive per-step LibTorch loop (h = a[:, t] * h + b[:, t]),
// timed on the first --naive-steps steps because a full 2^24-step loop takes minutes (its cost
// per step is constant, so GB/s on a prefix is its GB/s), and the log-space formulation
// h = P * cumsum(b / P) with P = exp(cumsum(log a)) written with LibTorch ops (numerically
// valid only for short T and a > 0: it is here as a speed baseline).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "seqpar/kernels/cpu_scan.h"
#include "seqpar/scan.h"

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<char> g_flush(64 << 20);

void flush_caches() {
  for (size_t i = 0; i < g_flush.size(); i += 64) g_flush[i] += 1;
}

template <class F>
double median_seconds(int reps, F&& f) {
  f();  // warm-up
  std::vector<double> s;
  for (int r = 0; r < reps; ++r) {
    flush_caches();
    const auto t0 = Clock::now();
    f();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

// Triad a = b + 3 c through LibTorch's vectorized add (the fastest plain streaming kernel we
// have in process: a hand loop without -march=native streams about 25% slower here).
double triad_gbs(int64_t n, int reps) {
  auto a = torch::empty({n}), b = torch::rand({n}), c = torch::rand({n});
  const double sec = median_seconds(reps, [&] { at::add_out(a, b, c, 3.0); });
  return 3.0 * 4 * n / sec / 1e9;
}

struct Shape {
  int64_t bd, T;
  bool time_contiguous;
};

// (batch*channels, T) with batch = 1: channels-contiguous tensors are (1, T, bd); the
// time-contiguous ones are (bd, T, 1) views... stored (bd, 1, T) -> transposed to (bd, T, 1).
// Random values of `dtype` in the benchmark's layout (a in [0.5, 1), b standard normal).
at::Tensor make_sequence(const Shape& s, at::ScalarType dtype, bool coefficient) {
  const std::vector<int64_t> shape =
      s.time_contiguous ? std::vector<int64_t>{s.bd, 1, s.T} : std::vector<int64_t>{1, s.T, s.bd};
  at::Tensor x = coefficient ? torch::rand(shape) * 0.5 + 0.5 : torch::randn(shape);
  x = x.to(dtype);
  return s.time_contiguous ? x.transpose(1, 2) : x;
}

std::pair<at::Tensor, at::Tensor> make_inputs(const Shape& s, at::ScalarType dtype) {
  return {make_sequence(s, dtype, true), make_sequence(s, dtype, false)};
}

seqpar::kernels::ScalarKind scalar_kind(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return seqpar::kernels::ScalarKind::kBFloat16;
    case at::kHalf: return seqpar::kernels::ScalarKind::kFloat16;
    case at::kComplexFloat: return seqpar::kernels::ScalarKind::kComplex64;
    default: return seqpar::kernels::ScalarKind::kFloat32;
  }
}

seqpar::kernels::Strides3 strides3(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2)};
}

// kernels/cpu forward on preallocated h (batch, time, channels float32 tensors).
void kernel_forward(const at::Tensor& a, const at::Tensor& b, at::Tensor& h, at::Tensor& hl) {
  seqpar::kernels::ScanForwardParams p;
  p.dtype = scalar_kind(a.scalar_type());
  p.shape = {a.size(0), a.size(1), a.size(2)};
  p.a = {a.data_ptr(), strides3(a)};
  p.b = {b.data_ptr(), strides3(b)};
  p.h = {h.data_ptr(), strides3(h)};
  p.h_last = {hl.data_ptr(), {hl.stride(0), hl.stride(1)}};
  p.num_threads = at::get_num_threads();
  seqpar::kernels::cpu::scan_forward(p);
}

void kernel_backward(const at::Tensor& a, const at::Tensor& h, const at::Tensor& g,
                     at::Tensor& ga, at::Tensor& gb, at::Tensor& gh0) {
  seqpar::kernels::ScanBackwardParams p;
  p.dtype = scalar_kind(a.scalar_type());
  p.shape = {a.size(0), a.size(1), a.size(2)};
  p.a = {a.data_ptr(), strides3(a)};
  p.h = {h.data_ptr(), strides3(h)};
  p.grad_h = {g.data_ptr(), strides3(g)};
  p.grad_a = {ga.data_ptr(), strides3(ga)};
  p.grad_b = {gb.data_ptr(), strides3(gb)};
  p.grad_h0 = {gh0.data_ptr(), {gh0.stride(0), gh0.stride(1)}};
  p.num_threads = at::get_num_threads();
  seqpar::kernels::cpu::scan_backward(p);
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("cpu_scan_bench options");
  std::string json_path;
  std::string dtype_name = "float32";
  int reps = 5;
  int64_t naive_steps = 2048;
  int64_t log2_elems = 24;
  std::vector<int> thread_counts;
  desc.add_options()("help", "show this help")(
      "json", po::value(&json_path), "write the results as JSON to this path")(
      "dtype", po::value(&dtype_name)->default_value("float32"),
      "element type: float32, bfloat16, float16 or complex64")(
      "reps", po::value(&reps)->default_value(5), "timed repetitions per figure (median)")(
      "log2-elements", po::value(&log2_elems)->default_value(24),
      "elements per input tensor = 2^this, with T >= 2^14 (the targets are stated for >= 24)")(
      "naive-steps", po::value(&naive_steps)->default_value(2048),
      "time steps of the naive loop baseline")(
      "threads", po::value(&thread_counts)->multitoken(),
      "thread counts to run (default: 1 and all hardware threads)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "cpu_scan_bench: " << e.what() << "\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (reps < 1 || log2_elems < 10 || log2_elems > 28 || naive_steps < 1) {
    std::cerr << "cpu_scan_bench: need --reps >= 1, 10 <= --log2-elements <= 28, "
                 "--naive-steps >= 1\n";
    return 2;
  }
  const std::map<std::string, at::ScalarType> dtypes{{"float32", at::kFloat},
                                                      {"bfloat16", at::kBFloat16},
                                                      {"float16", at::kHalf},
                                                      {"complex64", at::kComplexFloat}};
  if (!dtypes.count(dtype_name)) {
    std::cerr << "cpu_scan_bench: --dtype must be float32, bfloat16, float16 or complex64, got '"
              << dtype_name << "'\n";
    return 2;
  }
  const at::ScalarType dtype = dtypes.at(dtype_name);
  const double es = double(c10::elementSize(dtype));  // bytes per element of every stream
  const int hw = std::max(1u, std::thread::hardware_concurrency());
  if (thread_counts.empty()) thread_counts = hw > 1 ? std::vector<int>{1, hw} : std::vector<int>{1};
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  const int64_t n = int64_t(1) << log2_elems;
  const std::vector<int64_t> bds{1, 16, 256, 4096};

  nlohmann::json out;
  out["benchmark"] = "cpu_scan";
  out["min_elements"] = n;
  out["hardware_threads"] = hw;
  out["dtype"] = dtype_name;
  out["bytes_per_element"] = {{"forward", 3 * es}, {"backward", 5 * es}, {"triad", 12}};
  out["results"] = nlohmann::json::array();
  // The CPU engine's run-time target (SEQPAR_CPU_CAPABILITY caps it).
  const std::string target = seqpar::kernels::cpu::capability();
  out["cpu_capability"] = target;
  std::printf("CPU engine target: %s\n", target.c_str());

  std::printf("%-7s %-6s %-9s %-5s | %8s %6s %7s | %8s %6s %7s | %9s %9s | %7s\n",
              "threads", "B*D", "T", "lay", "fwd GB/s", "%triad", "fwd op", "bwd GB/s", "%triad",
              "bwd op", "naive", "log-space", "triad");
  for (int threads : thread_counts) {
    at::set_num_threads(threads);
    const double triad = triad_gbs(n, reps);
    for (int64_t bd : bds) {
      for (bool tc : {false, true}) {
        // (B*D, T) from (1, 2^24) to (4096, 2^14): 2^24 elements, but at least 2^14 steps.
        const Shape s{bd, std::max<int64_t>(n / bd, int64_t(1) << 14), tc};
        const int64_t elems_per_tensor = bd * s.T;
        auto [a, b] = make_inputs(s, dtype);
        const double fwd_op =
            median_seconds(reps, [&] { auto r = seqpar::scan(a, b); (void)r; });
        auto h = std::get<0>(seqpar::scan(a, b));
        auto h_last = torch::empty({a.size(0), a.size(2)}, a.options());
        const double fwd = median_seconds(reps, [&] { kernel_forward(a, b, h, h_last); });
        auto g = make_sequence(s, dtype, false);
        auto ga = torch::empty_like(h), gb = torch::empty_like(h), gh0 = torch::empty_like(h_last);
        const double bwd = median_seconds(reps, [&] { kernel_backward(a, h, g, ga, gb, gh0); });
        const double bwd_op = median_seconds(reps, [&] {
          auto r = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("seqpar::scan_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                           const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                           bool)>()
                       .call(a, h, std::nullopt, g, std::nullopt, false);
          (void)r;
        });
        // Naive loop over a prefix of the time steps.
        const int64_t steps = std::min(naive_steps, s.T);
        auto ap = a.narrow(1, 0, steps), bp = b.narrow(1, 0, steps);
        const double naive = median_seconds(std::max(1, reps / 2), [&] {
          auto hh = torch::zeros({a.size(0), a.size(2)}, a.options());
          auto outp = torch::empty_like(ap);
          for (int64_t t = 0; t < steps; ++t) {
            hh = ap.select(1, t) * hh + bp.select(1, t);
            outp.select(1, t).copy_(hh);
          }
        });
        const double logspace = median_seconds(reps, [&] {
          auto logp = torch::cumsum(torch::log(a), 1);
          auto p = torch::exp(logp);
          auto r = p * torch::cumsum(b / p, 1);
          (void)r;
        });
        const double elems = double(elems_per_tensor);
        const double fwd_gbs = 3 * es * elems / fwd / 1e9;
        const double bwd_gbs = 5 * es * elems / bwd / 1e9;
        const double fwd_op_gbs = 3 * es * elems / fwd_op / 1e9;
        const double bwd_op_gbs = 5 * es * elems / bwd_op / 1e9;
        const double naive_gbs = 3 * es * double(steps * bd) / naive / 1e9;
        const double log_gbs = 3 * es * elems / logspace / 1e9;
        std::printf(
            "%-7d %-6lld %-9lld %-5s | %8.2f %5.0f%% %7.2f | %8.2f %5.0f%% %7.2f | %9.3f %9.2f | "
            "%7.2f\n",
            threads, (long long)bd, (long long)s.T, tc ? "time" : "chan", fwd_gbs,
            100 * fwd_gbs / triad, fwd_op_gbs, bwd_gbs, 100 * bwd_gbs / triad, bwd_op_gbs,
            naive_gbs, log_gbs, triad);
        std::fflush(stdout);
        out["results"].push_back({{"threads", threads},
                                  {"batch_x_channels", bd},
                                  {"time", s.T},
                                  {"elements", elems_per_tensor},
                                  {"layout", tc ? "time_contiguous" : "channels_contiguous"},
                                  {"forward_gbs", fwd_gbs},
                                  {"backward_gbs", bwd_gbs},
                                  {"triad_gbs", triad},
                                  {"forward_pct_triad", 100 * fwd_gbs / triad},
                                  {"forward_op_gbs", fwd_op_gbs},
                                  {"backward_op_gbs", bwd_op_gbs},
                                  {"backward_pct_triad", 100 * bwd_gbs / triad},
                                  {"naive_loop_gbs", naive_gbs},
                                  {"naive_loop_steps", steps},
                                  {"log_space_gbs", log_gbs},
                                  {"forward_seconds", fwd},
                                  {"backward_seconds", bwd}});
      }
    }
  }
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    if (!f) {
      std::cerr << "cpu_scan_bench: cannot write --json " << json_path << "\n";
      return 1;
    }
    f << out.dump(2) << "\n";
  }
  return 0;
}
