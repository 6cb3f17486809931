// ManifoldScan: the layer of "Parallel Manifold Scans" (J. Stürtz; docs/design.md section 6) as a torch::nn module.
//
// For an input x (batch, time, d_model):
//   force     F_t = rmsnorm(x_t)
//   retention a_t = sigmoid(W_a F_t)                      (rotation mode: a_t = a_t * exp(i*phase),
//                                                          phase a learned per-channel angle)
//   step      dt_{t,h} = softplus(W_dt F_t)_h * base_h    (base_h geometric across heads)
//   velocity  v_t = a_t * v_{t-1} + dt_t * (W_b F_t)      (scan 1)
//   position  p_t = p_{t-1} + dt_t * v_t                  (scan 2, a = 1)
//   (second_order: both in one 2x2 block scan of (v_t, p_t), A_t = [[a_t, 0], [dt_t a_t, 1]],
//    b_t = (drive_t, dt_t drive_t); the same values to rounding)
//   (linoss: a forced oscillator instead, LinOSS-IM (Rusch & Rus, "Oscillatory state-space
//    models"): p'' = -w p + u per channel, stiffness w = softplus(w_raw) >= 0 learned, stepped
//    implicitly with dt_t: p_t = (p_{t-1} + dt v_{t-1} + dt drive_t) / s_t,
//    v_t = v_{t-1} - dt w p_t + drive_t, s_t = 1 + dt^2 w, drive_t = dt (W_b F_t); as one
//    2x2 block scan A_t = [[1, -dt w], [dt, 1]] / s_t, b_t = (drive_t, dt drive_t) / s_t,
//    whose eigenvalues have modulus 1 / sqrt(s_t) <= 1: no retention a, the implicit step damps)
//   y_t = x_t + W_o [headnorm(p_t), headnorm(v_t)];  out_t = y_t + MLP(rmsnorm(y_t))
//
// Design choices that are not obvious:
// - Both scans go through a SequenceBackend (a function object), never a concrete scan. The
//   same module runs on one rank (local_backend: seqpar::scan) or with the sequence split
//   over P ranks (sp_backend: seqpar::sp::scan), unchanged.
// - The position integrates velocity with a = 1, so its magnitude grows with t. The output
//   projection sees it through a per-head RMS normalisation (a direction on the sphere), which
//   keeps activations bounded at 10^5+ tokens; in rotation mode the real and imaginary parts
//   are normalised together.
// - Streaming: step() runs the same math one token at a time with plain elementwise ops
//   (state: v and p, each (batch, d_model), per layer), an independent path the tests
//   compare against the parallel forward.
// - The energy-drift term sum_t |E_t - E_{t-1}|, E_t = |v_t|^2 / 2 summed over channels,
//   needs E of the previous rank's last token at a slice boundary. It is carried in by one
//   more scan through the backend (a = 1 on a leading extra step, 0 elsewhere), so value
//   and gradient equal the one-rank computation on any number of ranks.
#pragma once

#include <seqpar/comm/exchange_algo.h>
#include <seqpar/psm.h>
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <tuple>

namespace seqpar::comm {
class Communicator;
}

namespace seqpar::models {

// Packed documents (docs/packed_sequences.md): the document starts of the whole sequence, an
// int64 tensor [N + 1] (0 first, the length last; batch 1), the same on every rank; or
// std::nullopt for one sequence per batch row. Every recurrence restarts from zeros at each start.
using Documents = std::optional<at::Tensor>;

// How a module runs its time recurrences: on one rank or across a sequence-parallel group.
// Every function takes the Documents of the call last.
struct SequenceBackend {
  // (h, h_last) = scan(a, b, h0): h_t = a_t h_{t-1} + b_t along dim 1, differentiable.
  std::function<std::tuple<at::Tensor, at::Tensor>(const at::Tensor& a, const at::Tensor& b,
                                                   const std::optional<at::Tensor>& h0,
                                                   const Documents& cu_seqlens)>
      scan;
  // (h, h_last) = block_scan(A, b, h0, lower_triangular): the 2x2 block recurrence
  // h_t = A_t h_{t-1} + b_t (seqpar/block_scan.h), A (batch, time, *channels, 2, 2), b and h
  // (batch, time, *channels, 2); real dtypes, no documents (no packed sequences).
  // Differentiable; used by ManifoldScan's second_order mode.
  std::function<std::tuple<at::Tensor, at::Tensor>(const at::Tensor& A, const at::Tensor& b,
                                                   const std::optional<at::Tensor>& h0,
                                                   bool lower_triangular)>
      block_scan;
  // (o, S_T) of chunked gated linear attention / gated DeltaNet (seqpar/matrix_state.h) from
  // the state h0 (zeros when absent), differentiable; used by MatrixStateBlock.
  std::function<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
      const std::optional<at::Tensor>& h0, int64_t chunk_size, const Documents& cu_seqlens)>
      chunk_gla;
  std::function<std::tuple<at::Tensor, at::Tensor>(
      const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
      const at::Tensor& beta, const std::optional<at::Tensor>& h0, int64_t chunk_size,
      const Documents& cu_seqlens)>
      chunk_gated_delta_rule;
  // (before, last) = previous_steps(x, width, initial): for x (batch, time, channels) the
  // `width` steps just before this slice of the sequence and the `width` steps ending the whole
  // sequence, each (batch, width, channels); where fewer than `width` steps precede, the
  // earlier rows come from `initial` (zeros when absent). Differentiable; used by
  // MatrixStateBlock's short convolution. With documents, `before` has one window per piece
  // of a document in this slice (bounds: local_bounds) and `last` one per document.
  std::function<std::tuple<at::Tensor, at::Tensor>(const at::Tensor& x, int64_t width,
                                                   const std::optional<at::Tensor>& initial,
                                                   const Documents& cu_seqlens)>
      previous_steps;
  // The bounds of this slice's pieces of the documents, int64 [pieces + 1], for
  // seqpar::causal_conv1d: cu_seqlens itself on one rank (seqpar::sp::packed_bounds across
  // ranks).
  std::function<at::Tensor(const at::Tensor& cu_seqlens, int64_t local_time)> local_bounds;
  // Exclusive prefixes of chunk states under a learned aggregation (seqpar/psm.h), in the
  // static Blelloch order; used by PsmBlock. partial_last_chunk: this slice's last chunk was
  // padded (across ranks only the last rank's may be). No documents: the learned aggregation
  // has no restart.
  std::function<psm::Prefixes(const at::Tensor& chunks, const psm::Aggregate& agg,
                              bool partial_last_chunk)>
      psm_scan;
  // The functions above are collectives over a group that splits the sequence (sp_backend):
  // a caller may not cut its slice into pieces and call them piece by piece.
  bool sequence_parallel = false;
};

SequenceBackend local_backend();
// `group` must outlive every backward pass through modules using the backend; `algo` is the
// exchange of the scans' summaries (the psm scan always runs the Blelloch schedule).
SequenceBackend sp_backend(std::shared_ptr<comm::Communicator> group,
                           comm::ExchangeAlgo algo = comm::ExchangeAlgo::kAuto);

// What every block family's options share: the width, the heads and the MLP's hidden width.
struct BlockOptions {
  int64_t d_model = 64;
  int64_t heads = 4;
  int64_t mlp_hidden = 256;
};

struct ManifoldScanOptions : BlockOptions {
  bool rotation = false;
  // Integrate position with velocity in one 2x2 block scan (seqpar::block_scan, state
  // (v, p), A = [[a, 0], [dt a, 1]], b = (drive, dt drive)) instead of two scalar scans: the
  // same model, the same outputs to rounding. Not with rotation (complex a) or documents
  // (the block scan has no packed sequences).
  bool second_order = false;
  // The LinOSS-IM oscillator in place of the retention (see the top of this file): one
  // general (not triangular) 2x2 block scan per layer. Not with rotation, second_order or
  // documents.
  bool linoss = false;
  // linoss: initial stiffness spread geometrically across channels over [min, max].
  double stiffness_min = 1e-3;
  double stiffness_max = 1.0;
  // Base time scales: base_0 = dt_max, ..., base_{H-1} = dt_min, geometric in between.
  double dt_min = 0.01;
  double dt_max = 1.0;
  // Initial retention spread across channels: a in [retention_min, retention_max].
  double retention_min = 0.5;
  double retention_max = 0.999;
};

// Recurrent state of one layer: velocity and position after the last processed token.
struct ManifoldState {
  at::Tensor velocity;  // (batch, d_model), complex64 in rotation mode
  at::Tensor position;
};

class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t dim, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& x);

 private:
  at::Tensor weight_;
  double eps_;
};
TORCH_MODULE(RMSNorm);

class ManifoldScanImpl : public torch::nn::Module {
 public:
  explicit ManifoldScanImpl(const ManifoldScanOptions& options);

  // x: (batch, time, d_model) float32. state (optional) is read as the state entering the
  // sequence and replaced by the state after it (it must be used with local_backend; with
  // sp_backend the returned state is the global final one). energy_drift (optional) is
  // incremented by sum over (batch, t in this slice) of |E_t - E_{t-1}|. documents: packed
  // documents (batch 1), both scans restart at each start; not with state or energy_drift,
  // nor with second_order or linoss.
  at::Tensor forward(const at::Tensor& x, const SequenceBackend& backend,
                     ManifoldState* state = nullptr, at::Tensor* energy_drift = nullptr,
                     const Documents& documents = std::nullopt);

  // One token: x (batch, d_model). state is updated in place (zeros when undefined).
  at::Tensor step(const at::Tensor& x, ManifoldState& state);

  const ManifoldScanOptions& options() const { return options_; }

 private:
  // The per-token quantities both paths share: retention a (undefined with linoss), drive b
  // and step dt, shaped like x's leading dims followed by d_model.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> coefficients(const at::Tensor& force);
  at::Tensor readout(const at::Tensor& x, const at::Tensor& position,
                     const at::Tensor& velocity);
  at::Tensor head_normalize(const at::Tensor& z) const;
  // second_order and linoss: (velocity, position) of the whole slice from one block scan of
  // (v, p) with the given A (..., 2, 2) and b (..., 2); sets *state.
  std::tuple<at::Tensor, at::Tensor> integrate_block(
      const SequenceBackend& backend, const at::Tensor& A, const at::Tensor& b,
      bool lower_triangular, const std::optional<at::Tensor>& v0,
      const std::optional<at::Tensor>& p0, ManifoldState* state);
  // linoss: the stiffness w = softplus(w_raw), (d_model).
  at::Tensor stiffness() const;

  ManifoldScanOptions options_;
  RMSNorm force_norm_{nullptr}, mlp_norm_{nullptr};
  torch::nn::Linear w_a_{nullptr}, w_b_{nullptr}, w_dt_{nullptr}, w_o_{nullptr};
  torch::nn::Linear mlp_in_{nullptr}, mlp_out_{nullptr};
  at::Tensor phase_;      // (d_model), rotation mode only
  at::Tensor stiffness_raw_;  // (d_model), linoss mode only
  at::Tensor base_step_;  // (heads) buffer
};
TORCH_MODULE(ManifoldScan);

}  // namespace seqpar::models
