// GEMM with the left matrix packed once and kept: C[M,N] = A[M,K] * B[K,N], row-major, for
// convolution weights (A, [Cout, Cin*kh*kw]) that stay fixed over many inference calls.
// OpenBLAS repacks A on every call, and on the deep layers of a batch-1 inference (ResNet18's
// layers 3-4: 2-9 MiB of weights against 49-196 columns) reading, writing and rereading that copy
// costs about as much as the products (sgemm_oncopy: 10% of a batch-1 ResNet18 inference).
// Packed layout: panels of 32 rows, Ap[panel][k][32] (rows past M zero), so the kernel streams A
// once, sequentially, two vectors per k, and broadcasts B's elements (B needs no packing: its rows
// are read 12 columns at a time). AVX-512 only (available() says); elsewhere the caller uses sgemm.
#pragma once
#include <cstdint>

#include "fsad/core/tensor.hpp"

namespace fsad::cpu::packed_gemm {

constexpr int64_t kPanel = 32;

/// Whether this build has the kernel (AVX-512).
bool available();
/// Panels of 32 rows that hold m rows.
inline int64_t panel_count(int64_t m) { return (m + kPanel - 1) / kPanel; }
/// Floats of A [m, k] packed into panels: ceil(m/32)*32*k.
inline int64_t packed_size(int64_t m, int64_t k) { return panel_count(m) * kPanel * k; }
/// A [m, k] (leading dimension lda) packed into panels at out (packed_size(m, k) floats); threads
/// take panels when called outside a parallel region.
void pack_into(const float* a, int64_t m, int64_t k, int64_t lda, float* out);
/// The same into a new tensor.
Tensor pack(const float* a, int64_t m, int64_t k, int64_t lda);
/// C rows [p0*32, min(m, p1*32)), columns [0, n): C = Ap * B, on the calling thread.
/// requires available(); ap from pack(., m, k, .); b [k, n] with leading dimension ldb.
void multiply(const float* ap, int64_t m, int64_t k, int64_t p0, int64_t p1, const float* b, int64_t n, int64_t ldb,
              float* c, int64_t ldc);

}  // namespace fsad::cpu::packed_gemm
