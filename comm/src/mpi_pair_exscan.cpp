// MpiCommunicator's exclusive scan of affine pairs (Communicator::pair_exscan): MPI_Iexscan with
// a non-commutative user MPI_Op, polled against the communicator's deadline like every other
// call. Reverse rank order runs on a rank-reversed duplicate communicator, since MPI scans run
// in rank order only.
#include <algorithm>
#include <complex>
#include <stdexcept>
#include <string>
#include <vector>

#include "seqpar/comm/mpi_communicator.h"

namespace seqpar::comm {
namespace {

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
PairOp pair_op(DataType dtype) {
  static PairOp ops[4];
  int index = 0, count = 0;
  MPI_Datatype base = MPI_FLOAT;
  MPI_User_function* fn = nullptr;
  switch (dtype) {
    case DataType::kFloat32: index = 0, count = 2, base = MPI_FLOAT, fn = compose_pairs<float>; break;
    case DataType::kFloat64:
      index = 1, count = 2, base = MPI_DOUBLE, fn = compose_pairs<double>;
      break;
    case DataType::kComplex64:
      index = 2, count = 4, base = MPI_FLOAT, fn = compose_pairs<std::complex<float>>;
      break;
    case DataType::kComplex128:
      index = 3, count = 4, base = MPI_DOUBLE, fn = compose_pairs<std::complex<double>>;
      break;
    default:
      throw std::invalid_argument(std::string("seqpar::comm: exscan has no op for ") +
                                  data_type_name(dtype));
  }
  if (ops[index].op == MPI_OP_NULL) {
    MPI_Type_contiguous(count, base, &ops[index].type);
    MPI_Type_commit(&ops[index].type);
    MPI_Op_create(fn, /*commute=*/0, &ops[index].op);
  }
  return ops[index];
}

}  // namespace

void MpiCommunicator::pair_exscan(ConstBuffer pairs, MutableBuffer result, bool reverse) {
  const PairOp op = pair_op(pairs.dtype);
  const std::size_t bytes = pairs.bytes;
  const int n = static_cast<int>(bytes / (2 * data_type_size(pairs.dtype)));
  // Staged through buffers that outlive a timeout (mpi_communicator.h).
  std::vector<std::vector<char>> staging(2);
  staging[0].assign(static_cast<const char*>(pairs.data),
                    static_cast<const char*>(pairs.data) + bytes);
  staging[1].resize(bytes);
  MPI_Comm mpi = reverse ? reversed_mpi_comm() : mpi_comm();
  std::vector<MPI_Request> requests(1);
  check(MPI_Iexscan(staging[0].data(), staging[1].data(), n, op.type, op.op, mpi, &requests[0]),
        "MPI_Iexscan", -1, __FILE__, __LINE__);
  wait_all(requests, staging, "exscan", -1);
  // MPI leaves the first rank's result undefined: it gets none.
  const int position = reverse ? size() - 1 - rank() : rank();
  if (position > 0) std::copy(staging[1].begin(), staging[1].end(), static_cast<char*>(result.data));
}

}  // namespace seqpar::comm
