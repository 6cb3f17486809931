// Result records and their environment (record.h).
#include "record.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <unistd.h>

#include "seqpar/comm/communicator.h"
#include "seqpar/scan.h"
#include "seqpar_bench_version.h"
#ifdef SEQPAR_COMM_WITH_MPI
#include "seqpar/comm/mpi_communicator.h"
#endif
#ifdef SEQPAR_COMM_WITH_NCCL
#include <nccl.h>
#endif
#ifdef SEQPAR_COMM_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace seqpar::bench {

Timing summarize(std::vector<double> s) {
  if (s.empty()) throw std::invalid_argument("summarize: no timings");
  std::sort(s.begin(), s.end());
  return {s[s.size() / 2], s.front(), s.back(), static_cast<int>(s.size())};
}

static std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

std::string huge_pages() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes, mode = "unknown";
  std::getline(in, modes);  // "always [madvise] never": the bracketed one is in force
  const auto open = modes.find('['), close = modes.find(']');
  if (open != std::string::npos && close != std::string::npos && close > open)
    mode = modes.substr(open + 1, close - open - 1);
  const char* alloc = std::getenv("THP_MEM_ALLOC_ENABLE");
  return mode + ", THP_MEM_ALLOC_ENABLE" + (alloc ? std::string("=") + alloc : std::string(" unset"));
}

nlohmann::json environment(const comm::Communicator* world, int sp_size) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  nlohmann::json versions{{"libtorch", TORCH_VERSION}, {"cuda", nullptr}, {"nccl", nullptr},
                          {"mpi", nullptr}};
#ifdef SEQPAR_COMM_WITH_MPI
  versions["mpi"] = comm::MpiCommunicator::library_version();
#endif
#ifdef SEQPAR_COMM_WITH_NCCL
  versions["nccl"] = std::to_string(NCCL_VERSION_CODE);
#endif
#ifdef SEQPAR_COMM_WITH_CUDA
  versions["cuda"] = std::to_string(CUDART_VERSION);
#endif
  nlohmann::json emulation = nullptr;
  if (world && world->injected_latency_s() > 0) {
    const char* rate = std::getenv("SEQPAR_EMULATED_BANDWIDTH_GBPS");
    emulation = {{"hosts", std::getenv("SEQPAR_EMULATED_HOSTS") ? std::atoi(std::getenv("SEQPAR_EMULATED_HOSTS")) : 0},
                 {"latency_us", world->injected_latency_s() * 1e6},
                 {"latency_kind", "injected"},
                 {"bandwidth_gbps", rate ? nlohmann::json(std::atof(rate)) : nlohmann::json(nullptr)},
                 {"bandwidth_kind", rate ? "tbf" : "real"}};
  }
  return {{"commit", SEQPAR_BENCH_COMMIT},
          {"build",
           {{"build_type", SEQPAR_BENCH_BUILD_TYPE},
            {"compiler", SEQPAR_BENCH_COMPILER},
            {"native_cpu", SEQPAR_BENCH_NATIVE_CPU},
            {"cpu_capability", seqpar::cpu_capability()},
            {"huge_pages", huge_pages()},
            {"threads", std::to_string(at::get_num_threads())}}},
          {"device", "cpu: " + cpu_model() + ", " +
                         std::to_string(std::thread::hardware_concurrency()) + " threads"},
          {"host", host},
          {"date", date},
          {"backend", world ? world->backend_name() : "none"},
          {"world_size", world ? world->size() : 1},
          {"sp_size", sp_size},
          {"versions", versions},
          {"emulation", emulation}};
}

nlohmann::json to_json(const Record& r, const nlohmann::json& env) {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json j{{"bench", r.bench},
                   {"case", r.cas},
                   {"metric", "seconds"},
                   {"median", r.timing.median},
                   {"min", r.timing.min},
                   {"max", r.timing.max},
                   {"repeats", r.timing.repeats},
                   {"predicted", opt(r.predicted)},
                   {"bytes_moved", opt(r.bytes_moved)},
                   {"roofline_gbps", opt(r.roofline_gbps)},
                   {"env", env}};
  if (!r.extra.empty()) j["extra"] = r.extra;
  return j;
}

void RecordFile::write(const std::string& path) const {
  if (path.empty()) return;
  std::ofstream out(path);
  if (!out) throw std::runtime_error("seqpar-bench: cannot write --json '" + path + "'");
  out << nlohmann::json{{"schema", "seqpar-bench/1"}, {"records", records_}}.dump(1) << "\n";
}

void Progress::done(const std::string& what) {
  ++count_;
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const long left = static_cast<long>(elapsed / count_ * (total_ - count_) + 0.5);
  std::printf("[%d/%d] %s | ~%ldm%02lds left\n", count_, total_, what.c_str(), left / 60, left % 60);
  std::fflush(stdout);
}

}  // namespace seqpar::bench
