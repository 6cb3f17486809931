// Host emulation of the nvcuda::wmma subset the chunk kernels use (kernels/cuda/chunk_tiles.cuh):
// m16n16k16 fragments of bfloat16 / float16 operands with float accumulators. Exact in the
// simplest way: every lane holds the whole 16 x 16 tile (row-major, whatever the fragment's
// layout), load/store/fill/mma act on the whole tile, and mma sums in float in k order. The
// kernels never touch fragment elements, so the per-lane distribution of real hardware does
// not matter; what differs from a GPU is only the order of the float additions inside mma.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has m16n16k16 only");
  static constexpr int num_elements = 256;
  T x[256];
};

inline float emu_to_float(float v) { return v; }
inline float emu_to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float emu_to_float(__half v) { return __half2float(v); }

template <class Use, class T, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  constexpr bool col = std::is_same_v<Layout, col_major>;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) f.x[i * 16 + j] = col ? p[j * ldm + i] : p[i * ldm + j];
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm,
                             layout_t layout) {
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) f.x[i * 16 + j] = layout == mem_col_major ? p[j * ldm + i] : p[i * ldm + j];
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm,
                              layout_t layout) {
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) (layout == mem_col_major ? p[j * ldm + i] : p[i * ldm + j]) = f.x[i * 16 + j];
}
template <class Use, class T, class Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, T v) {
  for (auto& e : f.x) e = v;
}
template <class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, T, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, T, LB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[256];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.x[i * 16 + j];
      for (int k = 0; k < 16; ++k) s += emu_to_float(a.x[i * 16 + k]) * emu_to_float(b.x[k * 16 + j]);
      out[i * 16 + j] = s;
    }
  for (int e = 0; e < 256; ++e) d.x[e] = out[e];
}
}  // namespace nvcuda::wmma
