// Run-time choice of the CPU engine's instruction-set target (cpu_scan.h).
//
// The engine is compiled once per target (kernels/CMakeLists.txt: on x86-64 "scalar" at
// x86-64-v2, "avx2" at x86-64-v3, "avx512" at x86-64-v4; on aarch64 "neon" at armv8-a and
// "sve" at armv8.2-a+sve for 256-bit vectors; elsewhere one baseline target), each
// copy in its own namespace (target.h). This file, compiled for the baseline, picks the best
// copy this CPU can run, capped by SEQPAR_CPU_CAPABILITY or set_capability_cap(), as ATen does
// with ATEN_CPU_CAPABILITY: a cap above what the CPU has runs the best target below it, an
// unknown name is an error naming the variable and the accepted values, raised by the first
// scan that runs. The choice is made once and cached; set_capability_cap() changes it.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "seqpar/kernels/cpu_block_scan.h"
#include "seqpar/kernels/cpu_matrix_state.h"
#include "seqpar/kernels/cpu_scan.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#include <sys/prctl.h>
// Linux UAPI values, for C libraries whose headers predate SVE.
#ifndef HWCAP_SVE
#define HWCAP_SVE (1UL << 22)
#endif
#ifndef HWCAP_AES
#define HWCAP_AES (1UL << 3)
#endif
#ifndef PR_SVE_GET_VL
#define PR_SVE_GET_VL 51
#endif
#ifndef PR_SVE_VL_LEN_MASK
#define PR_SVE_VL_LEN_MASK 0xffff
#endif
#endif

// One declaration set per compiled target (SEQPAR_CPU_HAVE_<TARGET> from CMake).
#define SEQPAR_DECLARE_TARGET(T)                              \
  namespace seqpar::kernels::cpu::T {                         \
  void scan_forward(const ScanForwardParams& params);         \
  void scan_backward(const ScanBackwardParams& params);       \
  void scan_summary(const ScanSummaryParams& params);         \
  void chunk_delta_rule_forward(const MatrixChunkForwardParams&);   \
  void chunk_delta_rule_backward(const MatrixChunkBackwardParams&); \
  void chunk_gla_forward(const MatrixChunkForwardParams&);          \
  void chunk_gla_backward(const MatrixChunkBackwardParams&);        \
  void block_scan_forward(const BlockScanForwardParams&);           \
  void block_scan_backward(const BlockScanBackwardParams&);         \
  void block_scan_summary(const BlockScanSummaryParams&);           \
  }
#ifdef SEQPAR_CPU_HAVE_SCALAR
SEQPAR_DECLARE_TARGET(scalar)
#endif
#ifdef SEQPAR_CPU_HAVE_AVX2
SEQPAR_DECLARE_TARGET(avx2)
#endif
#ifdef SEQPAR_CPU_HAVE_AVX512
SEQPAR_DECLARE_TARGET(avx512)
#endif
#ifdef SEQPAR_CPU_HAVE_NEON
SEQPAR_DECLARE_TARGET(neon)
#endif
#ifdef SEQPAR_CPU_HAVE_SVE
SEQPAR_DECLARE_TARGET(sve)
#endif
#ifdef SEQPAR_CPU_HAVE_NATIVE
SEQPAR_DECLARE_TARGET(native)
#endif

namespace seqpar::kernels::cpu {
namespace {

struct Target {
  const char* name;
  bool (*supported)();
  void (*forward)(const ScanForwardParams&);
  void (*backward)(const ScanBackwardParams&);
  void (*summary)(const ScanSummaryParams&);
  void (*delta_forward)(const MatrixChunkForwardParams&);
  void (*delta_backward)(const MatrixChunkBackwardParams&);
  void (*gla_forward)(const MatrixChunkForwardParams&);
  void (*gla_backward)(const MatrixChunkBackwardParams&);
  void (*block_forward)(const BlockScanForwardParams&);
  void (*block_backward)(const BlockScanBackwardParams&);
  void (*block_summary)(const BlockScanSummaryParams&);
};

bool always() { return true; }
#if defined(__x86_64__) || defined(_M_X64)
// The avx2 and avx512 copies are also compiled with AES and CLMUL (kernels/CMakeLists.txt).
bool has_aes_clmul() { return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul"); }
bool has_v3() { return __builtin_cpu_supports("x86-64-v3") && has_aes_clmul(); }
bool has_v4() { return __builtin_cpu_supports("x86-64-v4") && has_aes_clmul(); }
#endif
#ifdef SEQPAR_CPU_HAVE_SVE
// The sve copy is compiled for 256-bit vectors (-msve-vector-bits=256, Highway's SVE_256
// target: Neoverse V1, Graviton3), so it runs only where this thread's vector length is 256
// bits; other lengths (128 on Neoverse N2/V2) run the neon copy. Also compiled with the
// crypto extension, like the neon copy (kernels/CMakeLists.txt).
bool has_sve256() {
#if defined(__aarch64__) && defined(__linux__)
  const unsigned long hwcap = getauxval(AT_HWCAP);
  if ((hwcap & HWCAP_SVE) == 0 || (hwcap & HWCAP_AES) == 0) return false;
  const int vl = prctl(PR_SVE_GET_VL, 0, 0, 0, 0);
  return vl >= 0 && (vl & PR_SVE_VL_LEN_MASK) == 32;
#else
  return false;
#endif
}
#endif

// Compiled targets, lowest first.
#define SEQPAR_TARGET_ENTRY(T, check) \
  t.push_back({#T, check, T::scan_forward, T::scan_backward, T::scan_summary,       \
               T::chunk_delta_rule_forward, T::chunk_delta_rule_backward,          \
               T::chunk_gla_forward, T::chunk_gla_backward, T::block_scan_forward,      \
               T::block_scan_backward, T::block_scan_summary})
const std::vector<Target>& compiled() {
  static const std::vector<Target> targets = [] {
    std::vector<Target> t;
#ifdef SEQPAR_CPU_HAVE_NATIVE
    SEQPAR_TARGET_ENTRY(native, always);
#endif
#ifdef SEQPAR_CPU_HAVE_SCALAR
    SEQPAR_TARGET_ENTRY(scalar, always);
#endif
#ifdef SEQPAR_CPU_HAVE_NEON
    SEQPAR_TARGET_ENTRY(neon, always);
#endif
#ifdef SEQPAR_CPU_HAVE_SVE
    SEQPAR_TARGET_ENTRY(sve, has_sve256);
#endif
#ifdef SEQPAR_CPU_HAVE_AVX2
    SEQPAR_TARGET_ENTRY(avx2, has_v3);
#endif
#ifdef SEQPAR_CPU_HAVE_AVX512
    SEQPAR_TARGET_ENTRY(avx512, has_v4);
#endif
    return t;
  }();
  return targets;
}

// Names a cap may take on this architecture, lowest first.
std::vector<std::string> accepted_names() {
#if defined(__x86_64__) || defined(_M_X64)
  return {"scalar", "avx2", "avx512"};
#elif defined(__aarch64__)
  return {"scalar", "neon", "sve"};
#else
  return {"scalar"};
#endif
}

int rank_of(const std::string& name) {
  const auto names = accepted_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<int>(i);
  return -1;
}

std::string accepted_list() {
  std::string out;
  for (const auto& n : accepted_names()) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The best supported compiled target whose rank is <= cap_rank (the lowest if none is).
const Target* choose(int cap_rank) {
  const Target* best = nullptr;
  for (const Target& t : compiled()) {
    const int r = rank_of(t.name);  // -1 for "native": always eligible
    if (!t.supported() || (r > cap_rank && cap_rank >= 0)) continue;
    if (best == nullptr || r >= rank_of(best->name)) best = &t;
  }
  return best != nullptr ? best : &compiled().front();
}

std::mutex mutex;
std::atomic<const Target*> current{nullptr};

// Parses a cap; throws std::invalid_argument naming `source` and the accepted values.
int parse_cap(const std::string& value, const std::string& source) {
  const int r = rank_of(value);
  if (r < 0) {
    throw std::invalid_argument(source + "='" + value + "' is not a CPU capability; accepted: " +
                                accepted_list());
  }
  return r;
}

const Target& active() {
  const Target* t = current.load(std::memory_order_acquire);
  if (t != nullptr) return *t;
  std::lock_guard<std::mutex> lock(mutex);
  t = current.load(std::memory_order_relaxed);
  if (t == nullptr) {
    int cap = static_cast<int>(accepted_names().size()) - 1;
    if (const char* env = std::getenv("SEQPAR_CPU_CAPABILITY"); env != nullptr && *env != '\0') {
      cap = parse_cap(env, "SEQPAR_CPU_CAPABILITY");  // thrown again by every call until fixed
    }
    t = choose(cap);
    current.store(t, std::memory_order_release);
  }
  return *t;
}

}  // namespace

void scan_forward(const ScanForwardParams& params) { active().forward(params); }
void scan_backward(const ScanBackwardParams& params) { active().backward(params); }
void scan_summary(const ScanSummaryParams& params) { active().summary(params); }

void matrix_chunk_forward(const MatrixChunkForwardParams& params) {
  const Target& t = active();
  (params.recurrence == MatrixRecurrence::kGla ? t.gla_forward : t.delta_forward)(params);
}
void matrix_chunk_backward(const MatrixChunkBackwardParams& params) {
  const Target& t = active();
  (params.recurrence == MatrixRecurrence::kGla ? t.gla_backward : t.delta_backward)(params);
}

void block_scan_forward(const BlockScanForwardParams& params) { active().block_forward(params); }
void block_scan_backward(const BlockScanBackwardParams& params) {
  active().block_backward(params);
}
void block_scan_summary(const BlockScanSummaryParams& params) { active().block_summary(params); }

std::string capability() { return active().name; }

void set_capability_cap(const std::string& name) {
  const int cap = parse_cap(name, "seqpar::kernels::cpu::set_capability_cap: capability");
  std::lock_guard<std::mutex> lock(mutex);
  current.store(choose(cap), std::memory_order_release);
}

std::vector<std::string> supported_capabilities() {
  std::vector<std::string> out;
  for (const Target& t : compiled())
    if (t.supported()) out.push_back(t.name);
  return out;
}

}  // namespace seqpar::kernels::cpu
