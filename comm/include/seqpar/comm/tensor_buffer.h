// Tensors as communicator buffers: the one place where comm's plain buffer descriptions
// (communicator.h, no torch header) meet at::Tensor, for the cross-rank scan and the
// sequence-parallel code above it.
#pragma once

#include <ATen/ATen.h>

#include "seqpar/comm/communicator.h"

namespace seqpar::comm {

// Describes a tensor's storage as a communicator buffer (must be contiguous).
ConstBuffer const_buffer_of(const at::Tensor& t);
MutableBuffer mutable_buffer_of(at::Tensor& t);
DataType data_type_of(at::ScalarType type);

}  // namespace seqpar::comm
