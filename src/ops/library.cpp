// The seqpar operator library: every schema is declared here, once (docs/design.md rule 4).
// Backends register implementations with TORCH_LIBRARY_IMPL in their own files:
//   scan_cpu.cpp (CPU), scan_cuda.cpp (CUDA), scan_meta.cpp (Meta, for fake tensors and
//   torch.compile), scan_autograd.cpp (Autograd), and block_scan_*.cpp likewise for the 2x2
//   block scan; the matrix-state ops are
//   CompositeImplicitAutograd (src/matrix_state/ops.cpp), as are previous_steps and
//   causal_conv1d (src/api/previous_steps.cpp) and the sequence-parallel ops (src/sp/sp_ops.cpp).
#include <torch/library.h>

#include <string>

#include "seqpar/kernels/cpu_scan.h"

TORCH_LIBRARY(seqpar, m) {
  // h_t = a_t * h_{t-1} + b_t over dim 1 of a and b, shaped (batch, time, *channels).
  // cu_seqlens (packed sequences, batch 1; docs/packed_sequences.md): h0 and h_last have one
  // row per sequence, and every sequence runs from its own row (with reverse, from its end).
  m.def(
      "scan(Tensor a, Tensor b, Tensor? h0=None, bool reverse=False, Tensor? cu_seqlens=None)"
      " -> (Tensor h, Tensor h_last)");
  // Same result; autograd saves only every checkpoint_every-th state and recomputes the
  // rest chunk by chunk in backward (activation memory T*D/c instead of T*D). cu_seqlens as
  // for scan.
  m.def(
      "scan_checkpointed(Tensor a, Tensor b, Tensor? h0, bool reverse, int checkpoint_every,"
      " Tensor? cu_seqlens=None) -> (Tensor h, Tensor h_last)");
  // The fused adjoint pass (docs/design.md section 1). grad_h or grad_h_last may be None (zeros).
  // Returns grad_a, grad_b and grad_h0 (zeros shaped like h_last when h0 is None).
  m.def(
      "scan_backward(Tensor a, Tensor h, Tensor? h0, Tensor? grad_h, Tensor? grad_h_last,"
      " bool reverse, Tensor? cu_seqlens=None) -> (Tensor grad_a, Tensor grad_b, Tensor grad_h0)");
  // Propagator summary of the whole time range: (A, B) with h_last = A * h0 + B.
  m.def("scan_summary(Tensor a, Tensor b, bool reverse=False) -> (Tensor A, Tensor B)");
  // The 2x2 block recurrence h_t = A_t h_{t-1} + b_t (seqpar/block_scan.h): A (batch, time,
  // *channels, 2, 2), b (batch, time, *channels, 2), h0 (batch, *channels, 2).
  // lower_triangular: A[..., 0, 1] is taken as zero and not read.
  m.def(
      "block_scan(Tensor A, Tensor b, Tensor? h0=None, bool reverse=False,"
      " bool lower_triangular=False) -> (Tensor h, Tensor h_last)");
  // Its fused adjoint: grad_h / grad_h_last may be None (zeros); grad_h0 is always returned.
  m.def(
      "block_scan_backward(Tensor A, Tensor h, Tensor? h0, Tensor? grad_h, Tensor? grad_h_last,"
      " bool reverse, bool lower_triangular=False)"
      " -> (Tensor grad_A, Tensor grad_b, Tensor grad_h0)");
  // The slice's summary: h_last = M h0 + E, M (batch, *channels, 2, 2), E (batch, *channels, 2).
  m.def(
      "block_scan_summary(Tensor A, Tensor b, bool reverse=False, bool lower_triangular=False)"
      " -> (Tensor M, Tensor E)");
  // Matrix-state recurrences, chunked (seqpar/matrix_state.h; src/matrix_state/): flash-linear-
  // attention's layout, (batch, time, heads, dim). Return the outputs and the final state.
  // cu_seqlens (every op that takes it): packed sequences, int64 [N + 1], batch 1
  // (docs/packed_sequences.md); the states then have one row per sequence.
  m.def(
      "chunk_gla(Tensor q, Tensor k, Tensor v, Tensor g, float? scale=None,"
      " Tensor? initial_state=None, int chunk_size=64, Tensor? cu_seqlens=None)"
      " -> (Tensor o, Tensor final_state)");
  m.def(
      "chunk_gated_delta_rule(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta,"
      " float? scale=None, Tensor? initial_state=None, int chunk_size=64,"
      " Tensor? cu_seqlens=None) -> (Tensor o, Tensor final_state)");
  // Kimi Delta Attention: the delta rule with g (batch, time, heads, K).
  m.def(
      "chunk_kda(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, float? scale=None,"
      " Tensor? initial_state=None, int chunk_size=64, Tensor? cu_seqlens=None)"
      " -> (Tensor o, Tensor final_state)");
  // Gated DeltaProduct: num_householder factors per token; k, v, beta have time * n rows.
  m.def(
      "chunk_gated_delta_product(Tensor q, Tensor k, Tensor v, Tensor? g, Tensor beta,"
      " int num_householder, float? scale=None, Tensor? initial_state=None, int chunk_size=64,"
      " Tensor? cu_seqlens=None) -> (Tensor o, Tensor final_state)");
  // The fused chunk kernels behind chunk_gla, chunk_gated_delta_rule and chunk_kda on the CPU
  // (src/matrix_state/fused_chunks.cpp): recurrence is "gated_delta" (g per head, beta given),
  // "kda" (g per key channel, beta given) or "gla" (g per key channel, no beta). The forward also returns the state entering each chunk,
  // (batch, heads, chunks, K, V), from which the backward recomputes everything else; the
  // backward's grad_beta is empty for "gla".
  m.def(
      "matrix_chunk_forward(str recurrence, Tensor q, Tensor k, Tensor v, Tensor g, Tensor? beta,"
      " float scale, Tensor? initial_state, int chunk_size, Tensor? cu_seqlens=None)"
      " -> (Tensor o, Tensor final_state, Tensor chunk_states)");
  m.def(
      "matrix_chunk_backward(str recurrence, Tensor q, Tensor k, Tensor v, Tensor g, Tensor? beta,"
      " float scale, Tensor chunk_states, Tensor? grad_o, Tensor? grad_final_state,"
      " int chunk_size, Tensor? cu_seqlens=None) -> (Tensor grad_q, Tensor grad_k,"
      " Tensor grad_v, Tensor grad_g,"
      " Tensor grad_beta, Tensor grad_initial_state)");
  // The `width` steps before x and the `width` steps ending [initial, x] (seqpar/previous_steps.h).
  m.def(
      "previous_steps(Tensor x, int width, Tensor? initial, Tensor? cu_seqlens=None)"
      " -> (Tensor before, Tensor last)");
  // The depthwise causal convolution over [before, x] (seqpar/previous_steps.h).
  m.def(
      "causal_conv1d(Tensor x, Tensor before, Tensor weight, Tensor? bias, bool silu,"
      " Tensor? cu_seqlens=None) -> Tensor");
  // Sequence-parallel ops over the torch.distributed group named group_name (seqpar/sp.h): each
  // rank passes its own time slice; h0 / initial_state is read on the rank the scan enters
  // first; the final state is the global one, the same on every rank. `algo` names the
  // exchange of the ranks' summaries (seqpar/comm/exchange_algo.h; "auto": the cost model).
  m.def(
      "sp_scan(Tensor a, Tensor b, Tensor? h0, bool reverse, str group_name, str algo=\"auto\","
      " Tensor? cu_seqlens=None) -> (Tensor h, Tensor h_last)");
  m.def(
      "sp_block_scan(Tensor A, Tensor b, Tensor? h0, bool reverse, str group_name,"
      " str algo=\"auto\", bool lower_triangular=False) -> (Tensor h, Tensor h_last)");
  m.def(
      "sp_chunk_gla(Tensor q, Tensor k, Tensor v, Tensor g, float? scale, Tensor? initial_state,"
      " int chunk_size, str group_name, str algo=\"auto\", Tensor? cu_seqlens=None)"
      " -> (Tensor o, Tensor final_state)");
  m.def(
      "sp_chunk_gated_delta_rule(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta,"
      " float? scale, Tensor? initial_state, int chunk_size, str group_name,"
      " str algo=\"auto\", Tensor? cu_seqlens=None) -> (Tensor o, Tensor final_state)");
  m.def(
      "sp_chunk_kda(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, float? scale,"
      " Tensor? initial_state, int chunk_size, str group_name, str algo=\"auto\","
      " Tensor? cu_seqlens=None) -> (Tensor o, Tensor final_state)");
  m.def(
      "sp_chunk_gated_delta_product(Tensor q, Tensor k, Tensor v, Tensor? g, Tensor beta,"
      " int num_householder, float? scale, Tensor? initial_state, int chunk_size,"
      " str group_name, str algo=\"auto\", Tensor? cu_seqlens=None)"
      " -> (Tensor o, Tensor final_state)");
  m.def(
      "sp_previous_steps(Tensor x, int width, Tensor? initial, str group_name,"
      " str algo=\"auto\", Tensor? cu_seqlens=None) -> (Tensor before, Tensor last)");
  // This rank's local segment bounds of packed sequences (sp/packed_slice.h): cu_seqlens of the
  // whole pack, local_time the length of this rank's slice; checks cu_seqlens on every rank.
  m.def("sp_packed_bounds(Tensor cu_seqlens, int local_time, str group_name) -> Tensor");
  // Closed-form checks of the group's collectives; returns a one-line report (src/sp/sp_ops.cpp).
  m.def("sp_comm_check(str group_name) -> str");
  // The CPU engine's instruction-set target ("scalar", "avx2", "avx512", ...), chosen at run
  // time and capped by SEQPAR_CPU_CAPABILITY (kernels/include/seqpar/kernels/cpu_scan.h).
  m.def("cpu_capability() -> str", [] { return seqpar::kernels::cpu::capability(); });
}
