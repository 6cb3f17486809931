// Autograd for seqpar::scan and seqpar::scan_checkpointed: one fused backward pass
// (seqpar::scan_backward) instead of autograd through many small ops.
//
// checkpoint_every = 0 saves h (shared with the returned output, so no copy is made).
// checkpoint_every = c > 0 saves only the state entering each chunk of c steps, plus a and b;
// backward walks the chunks from the last one in scan order, recomputing the chunk's h with
// seqpar::scan from its saved entering state and running the fused adjoint on it. The adjoint
// leaving a chunk (its grad_h0) is the grad_h_last of the chunk before it. Activation memory
// drops from T*D to T*D/c (+ one chunk of scratch); the extra work is one forward pass, whose
// chunk of h stays in cache when c*batch*channels is small. With cu_seqlens (packed
// sequences) the chunks count steps of the pack and each runs with the pieces of sequences it
// holds as segments (packed_checkpoints.h).
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/determinism.h"
#include "ops/op_handles.h"
#include "ops/packed_checkpoints.h"
#include "ops/scan_checks.h"

namespace seqpar::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// h_last's shape: (batch, *channels), or (sequences, *channels) with the host bounds cu.
std::vector<int64_t> saved_h_last_shape(const at::Tensor& a, const at::Tensor& cu) {
  std::vector<int64_t> s = a.sizes().vec();
  s.erase(s.begin() + 1);
  if (cu.defined()) s[0] = cu.size(0) - 1;
  return s;
}

// Time range [start, end) of chunk k in scan order.
struct ChunkRange {
  int64_t start, end;
};
ChunkRange chunk_range(int64_t k, int64_t c, int64_t T, bool reverse) {
  if (!reverse) return {k * c, std::min(T, (k + 1) * c)};
  return {std::max<int64_t>(0, T - (k + 1) * c), T - k * c};
}

class ScanFunction : public torch::autograd::Function<ScanFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                               const std::optional<at::Tensor>& h0, bool reverse,
                               int64_t checkpoint_every,
                               const std::optional<at::Tensor>& cu_seqlens) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const bool packed = cu_seqlens && cu_seqlens->defined();
    auto [h, h_last] = scan_op().call(a, b, h0, reverse, cu_seqlens);
    if (packed) ctx->saved_data["cu_seqlens"] = *cu_seqlens;
    const at::Tensor h0_t = h0.has_value() ? *h0 : at::Tensor();
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["deterministic"] = deterministic_requested();
    ctx->saved_data["checkpoint_every"] = checkpoint_every;
    ctx->saved_data["has_h0"] = h0_t.defined();
    const int64_t T = a.size(1);
    if (checkpoint_every <= 0 || checkpoint_every >= T) {
      ctx->save_for_backward({a, h, h0_t});
    } else {
      // States entering chunks 1..n-1 lie at a regular stride in time; keep them in time
      // order (a copy, so that h itself can be freed).
      const int64_t c = checkpoint_every;
      const int64_t chunks = (T + c - 1) / c;
      const at::Tensor entering =
          reverse ? h.slice(1, T - (chunks - 1) * c, T - c + 1, c).clone()
                  : h.slice(1, c - 1, (chunks - 1) * c, c).clone();
      ctx->save_for_backward({a, b, h0_t, entering});
    }
    return {h, h_last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const DeterministicScope deterministic(ctx->saved_data["deterministic"].toBool());
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const int64_t c = ctx->saved_data["checkpoint_every"].toInt();
    const bool has_h0 = ctx->saved_data["has_h0"].toBool();
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& a = saved[0];
    const std::optional<at::Tensor> grad_h = defined_or_null(grads[0]);
    const std::optional<at::Tensor> grad_h_last = defined_or_null(grads[1]);
    const std::optional<at::Tensor> cu_seqlens =
        ctx->saved_data.count("cu_seqlens") ? std::optional<at::Tensor>(ctx->saved_data["cu_seqlens"].toTensor())
                                            : std::nullopt;
    at::Tensor grad_a, grad_b, grad_h0;
    if (saved.size() == 3) {
      std::tie(grad_a, grad_b, grad_h0) = scan_backward_op().call(
          a, saved[1], defined_or_null(saved[2]), grad_h, grad_h_last, reverse, cu_seqlens);
    } else {
      const at::Tensor& b = saved[1];
      const std::optional<at::Tensor> h0 = defined_or_null(saved[2]);
      const at::Tensor& entering = saved[3];
      const int64_t T = a.size(1);
      const int64_t chunks = (T + c - 1) / c;
      grad_a = at::empty_like(a);
      grad_b = at::empty_like(a);
      // Packed: the N rows of grad_h0, each written by the chunk its sequence starts in (an
      // empty sequence's is its grad_h_last); packed_checkpoints.h.
      at::Tensor cu_host, zero_row;
      if (cu_seqlens) {
        cu_host = check_cu_seqlens("seqpar::scan_checkpointed", *cu_seqlens, a.size(0), T);
        grad_h0 = grad_h_last ? grad_h_last->clone()
                              : at::zeros(saved_h_last_shape(a, cu_host), a.options());
        zero_row = at::zeros(saved_h_last_shape(a, at::Tensor()), a.options());  // batch 1
      }
      std::optional<at::Tensor> carry = cu_seqlens ? std::nullopt : grad_h_last;
      for (int64_t k = chunks - 1; k >= 0; --k) {
        const ChunkRange r = chunk_range(k, c, T, reverse);
        const at::Tensor a_k = a.slice(1, r.start, r.end);
        const at::Tensor b_k = b.slice(1, r.start, r.end);
        const std::optional<at::Tensor> saved_in =
            k == 0 ? std::nullopt
                   : std::optional<at::Tensor>(entering.select(1, reverse ? chunks - 1 - k : k - 1));
        std::optional<at::Tensor> h_in = k == 0 ? h0 : saved_in, carry_in = carry, local_cu;
        PackedChunk pc;
        if (cu_seqlens) {
          pc = packed_chunk(cu_host.data_ptr<int64_t>(), cu_host.size(0) - 1, r.start, r.end, reverse);
          h_in = piece_rows(pc, h0, pc.enter, saved_in, zero_row);
          carry_in = piece_rows(pc, grad_h_last, pc.leave, carry, zero_row);
          local_cu = pc.cu;
        }
        const at::Tensor h_k = std::get<0>(scan_op().call(a_k, b_k, h_in, reverse, local_cu));
        const std::optional<at::Tensor> g_k =
            grad_h ? std::optional<at::Tensor>(grad_h->slice(1, r.start, r.end)) : std::nullopt;
        auto [ga_k, gb_k, gh_k] =
            scan_backward_op().call(a_k, h_k, h_in, g_k, carry_in, reverse, local_cu);
        grad_a.slice(1, r.start, r.end).copy_(ga_k);
        grad_b.slice(1, r.start, r.end).copy_(gb_k);
        if (cu_seqlens) {
          scatter_piece_rows(pc, gh_k, pc.enter, grad_h0);
          carry = pc.enter >= 0 ? std::optional<at::Tensor>(gh_k.narrow(0, pc.enter, 1)) : std::nullopt;
        } else {
          carry = gh_k;
        }
      }
      if (!cu_seqlens) grad_h0 = *carry;
    }
    return {grad_a, grad_b, has_h0 ? grad_h0 : at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> scan_autograd(const at::Tensor& a, const at::Tensor& b,
                                                 const std::optional<at::Tensor>& h0,
                                                 bool reverse,
                                                 const std::optional<at::Tensor>& cu_seqlens) {
  auto out = ScanFunction::apply(a, b, h0, reverse, int64_t{0}, cu_seqlens);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor> scan_checkpointed_autograd(
    const at::Tensor& a, const at::Tensor& b, const std::optional<at::Tensor>& h0, bool reverse,
    int64_t checkpoint_every, const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(checkpoint_every >= 0, "seqpar::scan_checkpointed: argument 'checkpoint_every' ",
              "must be >= 0 (0 saves every state), got ", checkpoint_every);
  auto out = ScanFunction::apply(a, b, h0, reverse, checkpoint_every, cu_seqlens);
  return {out[0], out[1]};
}

// Below autograd, scan_checkpointed is the plain scan.
std::tuple<at::Tensor, at::Tensor> scan_checkpointed_plain(
    const at::Tensor& a, const at::Tensor& b, const std::optional<at::Tensor>& h0, bool reverse,
    int64_t checkpoint_every, const std::optional<at::Tensor>& cu_seqlens) {
  TORCH_CHECK(checkpoint_every >= 0, "seqpar::scan_checkpointed: argument 'checkpoint_every' ",
              "must be >= 0 (0 saves every state), got ", checkpoint_every);
  return scan_op().call(a, b, h0, reverse, cu_seqlens);
}

}  // namespace

TORCH_LIBRARY_IMPL(seqpar, Autograd, m) {
  m.impl("scan", &scan_autograd);
  m.impl("scan_checkpointed", &scan_checkpointed_autograd);
}

TORCH_LIBRARY_IMPL(seqpar, CompositeExplicitAutograd, m) {
  m.impl("scan_checkpointed", &scan_checkpointed_plain);
}

}  // namespace seqpar::ops
