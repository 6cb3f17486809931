// Tensors as communicator buffers (seqpar/comm/tensor_buffer.h).
#include "seqpar/comm/tensor_buffer.h"

#include <stdexcept>
#include <string>

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

}  // namespace seqpar::comm
