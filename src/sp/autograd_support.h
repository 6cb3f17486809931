// What the sequence-parallel autograd functions (sp_scan.cpp, sp_matrix_state.cpp) share: a
// holder that keeps the communicator alive in an autograd context (saved_data takes IValues
// only; registered once, in sp_scan.cpp, as seqpar._SpCommunicator), the stream that
// orders a tensor's device work.
#pragma once

#include <ATen/ATen.h>
#include <torch/custom_class.h>

#include <memory>

#include "seqpar/comm/communicator.h"
#include "seqpar/comm/rank_scan.h"
#include "seqpar/sp.h"
#ifdef SEQPAR_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace seqpar::sp {

struct CommunicatorHolder : torch::CustomClassHolder {
  explicit CommunicatorHolder(std::shared_ptr<comm::Communicator> c) : comm(std::move(c)) {}
  std::shared_ptr<comm::Communicator> comm;
};

inline comm::Stream stream_for(const at::Tensor& t) {
#ifdef SEQPAR_WITH_CUDA
  if (t.is_cuda()) return {c10::cuda::getCurrentCUDAStream(t.device().index()).stream()};
#endif
  (void)t;
  return {};
}

}  // namespace seqpar::sp
