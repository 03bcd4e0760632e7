// GEMM with a packed, kept left matrix (see packed_gemm.hpp). The micro-kernel computes a 32 x NR
// block of C (NR <= 12 columns) over the whole depth K in 24 accumulators: per k, two vector
// loads of the panel (32 rows of column k of A) and NR broadcasts of B[k][j], 2*NR FMAs. No
// blocking over K: a panel of 32 x K floats (at most 576 KiB in ResNet18) is streamed from the
// level-2 cache for the second and later column blocks, and at two vectors per 24 FMAs the
// kernel asks far less of that cache than it delivers. The finished block is transposed in
// registers (16 x 16) and written to C row by row.
#include "simd_avx512.hpp"  // first: its warning suppression must see <immintrin.h> parsed
//
#include "packed_gemm.hpp"

#include <algorithm>
#include <cstring>

#if defined(__AVX512F__) && !defined(FSAD_NO_AVX512)
#define FSAD_PACKED_AVX512 1
#else
#define FSAD_PACKED_AVX512 0
#endif

namespace fsad::cpu::packed_gemm {

bool available() { return FSAD_PACKED_AVX512 != 0; }

Tensor pack(const float* a, int64_t m, int64_t k, int64_t lda) {
    Tensor t = Tensor::empty(Shape{packed_size(m, k)});
    pack_into(a, m, k, lda, t.data());
    return t;
}

void pack_into(const float* a, int64_t m, int64_t k, int64_t lda, float* out) {
    const int64_t panels = panel_count(m);
    // threads take panels; with AVX-512 each 16 x 16 block of a full 16-row half is read as 16
    // row vectors and transposed in registers (the panel stores column k's 32 rows together)
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < panels; ++p) {
        float* panel = out + p * k * kPanel;
        for (int64_t h = 0; h < kPanel; h += 16) {
            const int64_t r0 = p * kPanel + h;
            int64_t kk = 0;
#if FSAD_PACKED_AVX512
            if (r0 + 16 <= m)
                for (; kk + 16 <= k; kk += 16) {
                    __m512 r[16];
                    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(a + (r0 + i) * lda + kk);
                    transpose16(r);
                    for (int j = 0; j < 16; ++j) _mm512_storeu_ps(panel + (kk + j) * kPanel + h, r[j]);
                }
#endif
            for (; kk < k; ++kk)
                for (int64_t i = 0; i < 16; ++i)
                    panel[kk * kPanel + h + i] = r0 + i < m ? a[(r0 + i) * lda + kk] : 0.0f;
        }
    }
}

#if FSAD_PACKED_AVX512
namespace {

// C[0..rows, 0..NR) = panel (32 x k) * B[0..k, 0..NR)
template <int NR>
void block(const float* ap, int64_t k, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t rows) {
    __m512 acc[NR][2];
    for (int j = 0; j < NR; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < k; ++kk) {
        const __m512 a0 = _mm512_loadu_ps(ap + kk * kPanel), a1 = _mm512_loadu_ps(ap + kk * kPanel + 16);
        const float* bk = b + kk * ldb;
        for (int j = 0; j < NR; ++j) {
            const __m512 bj = _mm512_set1_ps(bk[j]);
            acc[j][0] = _mm512_fmadd_ps(a0, bj, acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(a1, bj, acc[j][1]);
        }
    }
    if constexpr (NR >= 6) {
        // each half (16 rows): the columns transposed into rows in registers, stored masked
        const __mmask16 cols = static_cast<__mmask16>((1u << NR) - 1);
        for (int v = 0; v < 2; ++v) {
            __m512 r[16];
            for (int j = 0; j < 16; ++j) r[j] = j < NR ? acc[j][v] : _mm512_setzero_ps();
            transpose16(r);
            for (int64_t i = 0; i < std::min<int64_t>(16, rows - 16 * v); ++i)
                _mm512_mask_storeu_ps(c + (16 * v + i) * ldc, cols, r[i]);
        }
    } else {  // a few columns: through a buffer
        alignas(64) float tile[NR][kPanel];  // tile[j][i] = C[i][j]
        for (int j = 0; j < NR; ++j) {
            _mm512_store_ps(tile[j], acc[j][0]);
            _mm512_store_ps(tile[j] + 16, acc[j][1]);
        }
        for (int64_t i = 0; i < rows; ++i)
            for (int j = 0; j < NR; ++j) c[i * ldc + j] = tile[j][i];
    }
}

using BlockFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t);
constexpr int kMaxCols = 12;
constexpr BlockFn kBlocks[kMaxCols + 1] = {nullptr,   block<1>, block<2>, block<3>,  block<4>,  block<5>, block<6>,
                                           block<7>,  block<8>, block<9>, block<10>, block<11>, block<12>};

}  // namespace

void multiply(const float* ap, int64_t m, int64_t k, int64_t p0, int64_t p1, const float* b, int64_t n, int64_t ldb,
              float* c, int64_t ldc) {
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t r0 = p * kPanel, rows = std::min(kPanel, m - r0);
        if (rows <= 0) break;
        const float* panel = ap + p * kPanel * k;
        for (int64_t j0 = 0; j0 < n; j0 += kMaxCols) {
            const int64_t cols = std::min<int64_t>(kMaxCols, n - j0);
            kBlocks[cols](panel, k, b + j0, ldb, c + r0 * ldc + j0, ldc, rows);
        }
    }
}
#else
void multiply(const float*, int64_t, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t) {
    throw Error("packed_gemm::multiply: not available in this build (needs AVX-512)");
}
#endif

}  // namespace fsad::cpu::packed_gemm
