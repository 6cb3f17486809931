// Cross-rank exclusive scan of summaries: recursive doubling, MPI_Exscan with a
// non-commutative user op, and all-gather + local fold, written once over a SummaryKind
// (see rank_scan.h). Summaries travel packed into one flat buffer: their parts flattened and
// concatenated.
#include "seqpar/comm/rank_scan.h"

#include <cmath>
#include <complex>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "error.h"
#include "seqpar/comm/scan_schedule.h"
#include "summary_buffer.h"
#ifdef SEQPAR_COMM_WITH_MPI
#include "seqpar/comm/mpi_communicator.h"
#endif

namespace seqpar::comm {

DataType data_type_of(at::ScalarType type) {
  switch (type) {
    case at::kByte: return DataType::kUInt8;
    case at::kInt: return DataType::kInt32;
    case at::kLong: return DataType::kInt64;
    case at::kFloat: return DataType::kFloat32;
    case at::kDouble: return DataType::kFloat64;
    case at::kBFloat16: return DataType::kBFloat16;
    case at::kHalf: return DataType::kFloat16;
    case at::kComplexFloat: return DataType::kComplex64;
    case at::kComplexDouble: return DataType::kComplex128;
    default:
      throw std::invalid_argument(std::string("seqpar::comm: no communicator dtype for ") +
                                  c10::toString(type));
  }
}

ConstBuffer const_buffer_of(const at::Tensor& t) {
  TORCH_CHECK(t.is_contiguous(), "seqpar::comm: communicator buffers must be contiguous");
  const bool host = t.device().is_cpu();
  return {t.data_ptr(), static_cast<std::size_t>(t.nbytes()), data_type_of(t.scalar_type()),
          host ? MemoryKind::kHost : MemoryKind::kDevice, host ? -1 : t.device().index()};
}

MutableBuffer mutable_buffer_of(at::Tensor& t) {
  TORCH_CHECK(t.is_contiguous(), "seqpar::comm: communicator buffers must be contiguous");
  const bool host = t.device().is_cpu();
  return {t.data_ptr(), static_cast<std::size_t>(t.nbytes()), data_type_of(t.scalar_type()),
          host ? MemoryKind::kHost : MemoryKind::kDevice, host ? -1 : t.device().index()};
}

// ---------------------------------------------------------------------------------------------
// Cost model.

static double env_double(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  double x = std::strtod(v, &end);
  return end == v ? fallback : x;
}

CostModel cost_model_for(const std::string& backend) {
  auto cost = [](double alpha_us, double gbps) { return AlgoCost{alpha_us * 1e-6, 1.0 / (gbps * 1e9)}; };
  CostModel m;
  if (backend == "mpi") {
    // Fitted on the 2-core reference machine, Open MPI 4.1 shared memory, P = 2
    // (benchmarks/sp_results/sp_cost_model.txt).
    m.tree = cost(6.8, 2.56);
    m.exscan = cost(4.95, 1.42);
    m.allgather = cost(7.15, 3.54);
    m.ring = m.tree;  // the same point-to-point messages
    m.combine_s_per_byte = 1.0 / 4e9;
    // One thread's float32 matrix products of 128 x 128 blocks on the 2-core reference
    // machine (`seqpar-bench exchange --summary matrix` prints it; 87 and 108 GFLOP/s measured).
    m.flops_per_s = 80e9;
  } else if (backend.rfind("c10d", 0) == 0) {
    // gloo over loopback TCP: every message pays a socket round trip.
    m.tree = m.exscan = m.allgather = m.ring = cost(60, 1.5);
    m.combine_s_per_byte = 1.0 / 4e9;
    m.flops_per_s = 80e9;
  } else if (backend == "nccl") {
    // The NVLink parameters of the prediction (docs/sequence_parallel.md).
    m.tree = m.exscan = cost(6, 300);
    m.allgather = cost(6, 300);
    m.ring = cost(6, 300);
    m.combine_s_per_byte = 1.0 / 3000e9;
    m.flops_per_s = 50e12;  // stated: an H100's float32 matrix products
  }
  for (AlgoCost* c : {&m.tree, &m.exscan, &m.allgather, &m.ring}) {
    c->alpha_s = env_double("SEQPAR_SP_ALPHA_US", c->alpha_s * 1e6) * 1e-6;
    c->beta_s_per_byte = 1.0 / (env_double("SEQPAR_SP_BETA_GBPS", 1e-9 / c->beta_s_per_byte) * 1e9);
  }
  m.combine_s_per_byte =
      1.0 / (env_double("SEQPAR_SP_COMBINE_GBPS", 1e-9 / m.combine_s_per_byte) * 1e9);
  m.flops_per_s = env_double("SEQPAR_SP_COMBINE_GFLOPS", m.flops_per_s * 1e-9) * 1e9;
  return m;
}

CostModel cost_model_for(const Communicator& comm) {
  CostModel m = cost_model_for(comm.backend_name());
  for (AlgoCost* c : {&m.tree, &m.exscan, &m.allgather, &m.ring})
    c->alpha_s += comm.injected_latency_s();
  return m;
}

double predict_exchange_seconds(ExchangeAlgo algo, int P, double m, const CostModel& model,
                                 double s) {
  return predict_exchange_seconds(algo, P, ExchangeSize{m, s < 0 ? m / 2 : s, 0, 0}, model);
}

double predict_exchange_seconds(ExchangeAlgo algo, int P, const ExchangeSize& size,
                                 const CostModel& model) {
  if (P <= 1) return 0.0;
  const double m = size.summary_bytes, s = size.state_bytes;
  const double combine_s = size.combine_flops / model.flops_per_s;
  const double apply_s = size.apply_flops / model.flops_per_s;
  const double rounds = std::ceil(std::log2(static_cast<double>(P)));
  switch (algo) {
    case ExchangeAlgo::kTree:
      // Every round: one send_recv of m bytes, then two compositions (exclusive and
      // inclusive accumulators), each reading 2 and writing 1 summary.
      return rounds * (model.tree.alpha_s + m * model.tree.beta_s_per_byte +
                       3.0 * m * model.combine_s_per_byte + 2.0 * combine_s);
    case ExchangeAlgo::kExscan:
      // Open MPI runs Exscan as log-depth rounds with the user op on the host.
      return rounds * (model.exscan.alpha_s + m * model.exscan.beta_s_per_byte + combine_s);
    case ExchangeAlgo::kAllGather:
      // Latency of a log-depth all-gather, bandwidth of receiving (P-1) summaries, and the
      // fold of up to P-1 predecessors.
      return rounds * model.allgather.alpha_s + (P - 1) * m * model.allgather.beta_s_per_byte +
             (P - 1) * (1.5 * m * model.combine_s_per_byte + combine_s);
    case ExchangeAlgo::kRing:
      // P - 1 hops one after another, each a message of one state and one application of a
      // summary to it (reads the summary and the state, writes a state).
      return (P - 1) * (model.ring.alpha_s + s * model.ring.beta_s_per_byte +
                        (m + 2.0 * s) * model.combine_s_per_byte + apply_s);
    case ExchangeAlgo::kBlelloch:
      // Up and down sweep: every round one message of m bytes and at most one composition;
      // the down-sweep's top round carries only the identity, which is never sent.
      return (2.0 * rounds - 1.0) * (model.tree.alpha_s + m * model.tree.beta_s_per_byte +
                                     1.5 * m * model.combine_s_per_byte + combine_s);
    case ExchangeAlgo::kAuto: break;
  }
  return std::numeric_limits<double>::infinity();
}

ExchangeAlgo choose_exchange_algo(const Communicator& comm, const ExchangeSize& size,
                                   ExchangeAlgo requested, bool exscan_possible) {
  const double state_bytes = size.state_bytes;
  if (requested != ExchangeAlgo::kAuto) return requested;
  if (const char* env = std::getenv("SEQPAR_SP_ALGO")) {
    ExchangeAlgo algo = parse_exchange_algo(env);
    if (algo == ExchangeAlgo::kExscan && !exscan_possible) return ExchangeAlgo::kTree;
    if (algo == ExchangeAlgo::kRing && state_bytes <= 0) return ExchangeAlgo::kTree;
    if (algo != ExchangeAlgo::kAuto) return algo;
  }
  const CostModel model = cost_model_for(comm);
  ExchangeAlgo best = ExchangeAlgo::kTree;
  double best_s = predict_exchange_seconds(best, comm.size(), size, model);
  const double gather_s =
      predict_exchange_seconds(ExchangeAlgo::kAllGather, comm.size(), size, model);
  if (gather_s < best_s) best = ExchangeAlgo::kAllGather, best_s = gather_s;
  if (state_bytes > 0) {
    const double ring_s = predict_exchange_seconds(ExchangeAlgo::kRing, comm.size(), size, model);
    if (ring_s < best_s) best = ExchangeAlgo::kRing, best_s = ring_s;
  }
#ifdef SEQPAR_COMM_WITH_MPI
  // MPI_Exscan needs the MPI communicator itself, not a wrapper that reports the same backend.
  if (exscan_possible && dynamic_cast<const MpiCommunicator*>(&comm) != nullptr) {
    const double exscan_s =
        predict_exchange_seconds(ExchangeAlgo::kExscan, comm.size(), size, model);
    if (exscan_s < best_s) best = ExchangeAlgo::kExscan, best_s = exscan_s;
  }
#endif
  return best;
}

// ---------------------------------------------------------------------------------------------
// Summary kinds.

namespace {

[[noreturn]] void bad_summary(const char* kind, const std::string& detail) {
  throw std::invalid_argument(std::string("seqpar::comm ") + kind + " summary: " + detail);
}

class DiagonalSummary final : public SummaryKind {
 public:
  const char* name() const override { return "diagonal"; }
  void check(const SummaryParts& s) const override {
    if (s.size() != 2) bad_summary(name(), "expected 2 parts (A, B)");
    if (s[0].sizes() != s[1].sizes()) bad_summary(name(), "A and B shapes differ");
  }
  SummaryParts identity_like(const SummaryParts& s) const override {
    return {at::ones_like(s[0]), at::zeros_like(s[1])};
  }
  SummaryParts combine(const SummaryParts& later, const SummaryParts& earlier) const override {
    return {later[0] * earlier[0], at::addcmul(later[1], later[0], earlier[1])};
  }
  at::Tensor adjoint_transition(const at::Tensor& A) const override {
    return A.conj().resolve_conj();
  }
  at::Tensor apply(const SummaryParts& s, const at::Tensor& x) const override {
    return at::addcmul(s[1], s[0], x);
  }
  ExchangeSize exchange_size(const SummaryParts& s) const override {
    const double e = static_cast<double>(s[0].element_size());
    return {2.0 * s[0].numel() * e, s[1].numel() * e, 0, 0};  // elementwise: bytes only
  }
  bool elementwise() const override { return true; }
};

class MatrixSummary final : public SummaryKind {
 public:
  const char* name() const override { return "matrix"; }
  void check(const SummaryParts& s) const override {
    if (s.size() != 2) bad_summary(name(), "expected 2 parts (M, E)");
    const at::Tensor &M = s[0], &E = s[1];
    if (M.dim() < 2 || E.dim() != M.dim() || M.size(-1) != M.size(-2) ||
        E.size(-2) != M.size(-1) ||
        M.sizes().slice(0, M.dim() - 2) != E.sizes().slice(0, E.dim() - 2)) {
      std::ostringstream os;
      os << "expected M (..., K, K) and E (..., K, V) with the same leading dims, got M "
         << M.sizes() << " and E " << E.sizes();
      bad_summary(name(), os.str());
    }
  }
  SummaryParts identity_like(const SummaryParts& s) const override {
    const at::Tensor eye = at::eye(s[0].size(-1), s[0].options());
    return {eye.expand(s[0].sizes()).contiguous(), at::zeros_like(s[1])};
  }
  SummaryParts combine(const SummaryParts& later, const SummaryParts& earlier) const override {
    return {at::matmul(later[0], earlier[0]), at::matmul(later[0], earlier[1]) + later[1]};
  }
  at::Tensor adjoint_transition(const at::Tensor& M) const override {
    return M.transpose(-1, -2).conj().resolve_conj().contiguous();
  }
  at::Tensor apply(const SummaryParts& s, const at::Tensor& x) const override {
    return at::matmul(s[0], x) + s[1];
  }
  ExchangeSize exchange_size(const SummaryParts& s) const override {
    const double e = static_cast<double>(s[0].element_size());
    const double K = static_cast<double>(s[0].size(-1)), V = static_cast<double>(s[1].size(-1));
    const double heads = static_cast<double>(s[0].numel()) / (K * K);
    // combine: M_l M_e and M_l E_e; apply: M x.
    return {(s[0].numel() + s[1].numel()) * e, s[1].numel() * e, 2.0 * heads * K * K * (K + V),
            2.0 * heads * K * K * V};
  }
};

}  // namespace

const SummaryKind& diagonal_summary() {
  static const DiagonalSummary kind;
  return kind;
}
const SummaryKind& matrix_summary() {
  static const MatrixSummary kind;
  return kind;
}

ExchangeAlgo resolve_exchange_algo(const Communicator& comm, const SummaryKind& kind,
                                   const SummaryParts& own, ExchangeAlgo requested,
                                   bool whole_summaries) {
  ExchangeSize size = kind.exchange_size(own);
  if (whole_summaries) size.state_bytes = 0;
  return choose_exchange_algo(comm, size, requested, kind.elementwise());
}

std::pair<at::Tensor, at::Tensor> compose(const std::pair<at::Tensor, at::Tensor>& later,
                                          const std::pair<at::Tensor, at::Tensor>& earlier) {
  const SummaryParts s = diagonal_summary().combine({later.first, later.second},
                                                    {earlier.first, earlier.second});
  return {s[0], s[1]};
}

// ---------------------------------------------------------------------------------------------
// Algorithms. `position` is the rank's place in scan order (rank, or P-1-rank for reverse).

namespace {

using Summary = std::pair<at::Tensor, at::Tensor>;
constexpr int kTreeTag = 7101;

using detail::pack;
using detail::packed_numel;
using detail::unpack;

SummaryParts tree_scan(Communicator& comm, const SummaryKind& kind, const SummaryParts& own,
                       bool reverse, Stream stream) {
  const int P = comm.size();
  const int q = reverse ? P - 1 - comm.rank() : comm.rank();
  auto rank_of = [&](int position) { return reverse ? P - 1 - position : position; };
  SummaryParts exclusive = kind.identity_like(own);
  SummaryParts inclusive = own;  // composition of the window of positions ending at q
  const int64_t n = packed_numel(own);
  at::Tensor incoming = at::empty({n}, own[0].options());
  for (int d = 1; d < P; d *= 2) {
    const int dst = q + d < P ? rank_of(q + d) : -1;
    const int src = q - d >= 0 ? rank_of(q - d) : -1;
    at::Tensor outgoing = pack(inclusive);
    comm.send_recv(const_buffer_of(outgoing), dst, mutable_buffer_of(incoming), src, kTreeTag,
                   stream);
    if (src >= 0) {
      // The received window lies just before ours: it is applied first.
      const SummaryParts earlier = unpack(incoming, own);
      exclusive = kind.combine(exclusive, earlier);
      inclusive = kind.combine(inclusive, earlier);
      incoming = at::empty({n}, own[0].options());
    }
  }
  return exclusive;
}

SummaryParts all_gather_scan(Communicator& comm, const SummaryKind& kind,
                             const SummaryParts& own, bool reverse, Stream stream) {
  const int P = comm.size();
  const int q = reverse ? P - 1 - comm.rank() : comm.rank();
  at::Tensor mine = pack(own);
  at::Tensor all = at::empty({P, mine.numel()}, mine.options());
  comm.all_gather(const_buffer_of(mine), mutable_buffer_of(all), stream);
  SummaryParts exclusive = kind.identity_like(own);
  for (int position = 0; position < q; ++position) {
    const int r = reverse ? P - 1 - position : position;
    exclusive = kind.combine(unpack(all[r], own), exclusive);
  }
  return exclusive;
}

// The state handed from rank to rank: position q receives the state entering it from q - 1 and
// sends its summary applied to it to q + 1.
at::Tensor ring_entering_state(Communicator& comm, const SummaryKind& kind,
                               const SummaryParts& own, bool reverse, Stream stream) {
  const int P = comm.size();
  const int q = reverse ? P - 1 - comm.rank() : comm.rank();
  auto rank_of = [&](int position) { return reverse ? P - 1 - position : position; };
  at::Tensor state = at::zeros_like(own[1]);
  if (q > 0) {
    comm.send_recv(ConstBuffer{}, -1, mutable_buffer_of(state), rank_of(q - 1), kTreeTag + 1,
                   stream);
  }
  if (q + 1 < P) {
    at::Tensor next = kind.apply(own, state).contiguous();
    at::Tensor none = at::empty({0}, own[1].options());
    comm.send_recv(const_buffer_of(next), rank_of(q + 1), mutable_buffer_of(none), -1,
                   kTreeTag + 1, stream);
  }
  return state;
}

Summary identity_like(const at::Tensor& A) { return {at::ones_like(A), at::zeros_like(A)}; }

#ifdef SEQPAR_COMM_WITH_MPI
// MPI applies a user op as inoutvec[i] = invec[i] (op) inoutvec[i], where invec comes from the
// lower ranks. Exscan's result on rank r is x_0 (op) x_1 (op) ... (op) x_{r-1}, so "x (op) y"
// must mean "y after x": y o x.
template <typename T>
void compose_pairs(void* invec, void* inoutvec, int* len, MPI_Datatype*) {
  const T* earlier = static_cast<const T*>(invec);
  T* later = static_cast<T*>(inoutvec);
  for (int i = 0; i < *len; ++i) {
    const T a_e = earlier[2 * i], b_e = earlier[2 * i + 1];
    const T a_l = later[2 * i], b_l = later[2 * i + 1];
    later[2 * i] = a_l * a_e;
    later[2 * i + 1] = a_l * b_e + b_l;
  }
}

struct PairOp {
  MPI_Datatype type = MPI_DATATYPE_NULL;
  MPI_Op op = MPI_OP_NULL;
};

// One (datatype, op) per scalar type, created on first use and kept for the process's life.
PairOp pair_op(at::ScalarType type) {
  static PairOp ops[4];
  int index = 0, count = 0;
  MPI_Datatype base = MPI_FLOAT;
  MPI_User_function* fn = nullptr;
  switch (type) {
    case at::kFloat: index = 0, count = 2, base = MPI_FLOAT, fn = compose_pairs<float>; break;
    case at::kDouble: index = 1, count = 2, base = MPI_DOUBLE, fn = compose_pairs<double>; break;
    case at::kComplexFloat:
      index = 2, count = 4, base = MPI_FLOAT, fn = compose_pairs<std::complex<float>>;
      break;
    case at::kComplexDouble:
      index = 3, count = 4, base = MPI_DOUBLE, fn = compose_pairs<std::complex<double>>;
      break;
    default:
      throw std::invalid_argument(std::string("seqpar::comm: exscan has no op for ") +
                                  c10::toString(type));
  }
  if (ops[index].op == MPI_OP_NULL) {
    MPI_Type_contiguous(count, base, &ops[index].type);
    MPI_Type_commit(&ops[index].type);
    MPI_Op_create(fn, /*commute=*/0, &ops[index].op);
  }
  return ops[index];
}

Summary exscan(MpiCommunicator& comm, const Summary& own, bool reverse, Stream stream) {
  const int P = comm.size();
  const int q = reverse ? P - 1 - comm.rank() : comm.rank();
  const int64_t D = own.first.numel();
  // Interleaved (A_i, B_i) pairs on the host: the user op runs on the CPU.
  at::Tensor pairs = at::stack({own.first.reshape({D}), own.second.reshape({D})}, 1)
                         .to(at::kCPU)
                         .contiguous();
  const std::size_t bytes = static_cast<std::size_t>(pairs.nbytes());
  std::vector<std::vector<char>> staging(2);
  staging[0].assign(static_cast<const char*>(pairs.data_ptr()),
                    static_cast<const char*>(pairs.data_ptr()) + bytes);
  staging[1].resize(bytes);
  PairOp op = pair_op(own.first.scalar_type());
  MPI_Comm mpi = reverse ? comm.reversed_mpi_comm() : comm.mpi_comm();
  std::vector<MPI_Request> requests(1);
  comm.check(MPI_Iexscan(staging[0].data(), staging[1].data(), static_cast<int>(D), op.type,
                         op.op, mpi, &requests[0]),
             "MPI_Iexscan", -1, __FILE__, __LINE__);
  comm.wait_all(requests, staging, "exscan", -1);
  (void)stream;
  if (q == 0) return identity_like(own.first);  // MPI leaves the first rank's result undefined
  at::Tensor result = at::from_blob(staging[1].data(), {D, 2}, pairs.options())
                          .to(own.first.device());
  return {result.select(1, 0).reshape(own.first.sizes()).contiguous(),
          result.select(1, 1).reshape(own.first.sizes()).contiguous()};
}
#endif

}  // namespace

SummaryParts rank_exclusive_scan(Communicator& comm, const SummaryKind& kind,
                                 const SummaryParts& own_in, bool reverse, ExchangeAlgo algo,
                                 Stream stream) {
  kind.check(own_in);
  SummaryParts own;
  for (const at::Tensor& t : own_in) {
    TORCH_CHECK(t.scalar_type() == own_in[0].scalar_type() && t.device() == own_in[0].device(),
                "seqpar rank_exclusive_scan: the parts of a ", kind.name(),
                " summary must share dtype and device");
    own.push_back(t.contiguous());
  }
  const auto t = own[0].scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kComplexFloat ||
                  t == at::kComplexDouble,
              "seqpar rank_exclusive_scan: summaries must be float32, float64, complex64 or "
              "complex128, got ",
              t);
  if (comm.size() == 1) return kind.identity_like(own);
  switch (resolve_exchange_algo(comm, kind, own, algo, /*whole_summaries=*/true)) {
    case ExchangeAlgo::kTree: return tree_scan(comm, kind, own, reverse, stream);
    case ExchangeAlgo::kAllGather: return all_gather_scan(comm, kind, own, reverse, stream);
    case ExchangeAlgo::kBlelloch: {
      const ScanSchedule schedule = blelloch_schedule(comm.size(), comm.rank(), reverse);
      auto result = run_scan_schedule(
          comm, schedule, own,
          [&kind](std::size_t, const SummaryParts& later, const SummaryParts& earlier) {
            return kind.combine(later, earlier);
          },
          stream);
      return result ? *result : kind.identity_like(own);
    }
    case ExchangeAlgo::kExscan: {
#ifdef SEQPAR_COMM_WITH_MPI
      auto* mpi = dynamic_cast<MpiCommunicator*>(&comm);
      if (mpi != nullptr && kind.elementwise()) {
        auto [A, B] = exscan(*mpi, {own[0], own[1]}, reverse, stream);
        return {A, B};
      }
#endif
      SEQPAR_COMM_FAIL(CommError, comm.backend_name(), "rank_exclusive_scan", comm.rank(), -1,
                       std::string("the exscan algorithm needs the MPI backend and an "
                                   "elementwise summary kind (this one is '") +
                           kind.name() + "')");
    }
    case ExchangeAlgo::kRing:
      SEQPAR_COMM_FAIL(CommError, comm.backend_name(), "rank_exclusive_scan", comm.rank(), -1,
                       "the ring passes states, not summaries: use rank_entering_state");
    case ExchangeAlgo::kAuto: break;
  }
  SEQPAR_COMM_FAIL(CommError, comm.backend_name(), "rank_exclusive_scan", comm.rank(), -1,
                   "no algorithm chosen");
}

at::Tensor rank_entering_state(Communicator& comm, const SummaryKind& kind,
                               const SummaryParts& own_in, bool reverse, ExchangeAlgo algo,
                               Stream stream) {
  kind.check(own_in);
  if (comm.size() == 1) return at::zeros_like(own_in[1]);
  SummaryParts own;
  for (const at::Tensor& t : own_in) own.push_back(t.contiguous());
  const ExchangeAlgo chosen = resolve_exchange_algo(comm, kind, own, algo);
  if (chosen == ExchangeAlgo::kRing) return ring_entering_state(comm, kind, own, reverse, stream);
  return rank_exclusive_scan(comm, kind, own, reverse, chosen, stream)[1];
}

std::pair<at::Tensor, at::Tensor> rank_exclusive_scan(Communicator& comm, const at::Tensor& A,
                                                      const at::Tensor& B, bool reverse,
                                                      ExchangeAlgo algo, Stream stream) {
  TORCH_CHECK(A.sizes() == B.sizes(), "seqpar rank_exclusive_scan: A and B shapes differ (",
              A.sizes(), " vs ", B.sizes(), ")");
  const SummaryParts e = rank_exclusive_scan(comm, diagonal_summary(), {A, B}, reverse, algo, stream);
  return {e[0], e[1]};
}

}  // namespace seqpar::comm
