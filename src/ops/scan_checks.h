// Input validation at the API boundary (docs/design.md rule 3). Every message names the op and the
// argument and says what was expected; nothing here asserts on user input.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace seqpar::ops {

// Checks a, b (and h0 when given) for the scan-family ops: at least two dims, same shape,
// a supported floating or complex dtype shared by all, one device; h0 shaped (batch, *channels).
// With cu_seqlens (packed sequences, checked by ops/packed_sequences.h) h0 has one row per
// sequence: (N, *channels).
void check_scan_inputs(const char* op, const at::Tensor& a, const at::Tensor& b,
                       const std::optional<at::Tensor>& h0,
                       const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

// Checks a (batch, time, *channels)-shaped tensor `name` against a reference `ref_name`.
void check_like(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                const at::Tensor& ref);

// Checks a (batch, *channels)-shaped state tensor (h0, grad_h_last) against the sequence ref;
// (N, *channels) with the N sequences of cu_seqlens.
void check_state_like(const char* op, const char* name, const at::Tensor& t,
                      const char* ref_name, const at::Tensor& ref,
                      const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

}  // namespace seqpar::ops
