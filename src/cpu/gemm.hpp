// GEMM on the CPU. fsad owns the threading: OpenBLAS runs single-threaded (set in blas_threads.cpp)
// and fsad splits work across its OpenMP threads. Two thread pools on two cores spin against
// each other (OpenBLAS workers vs OpenMP workers waiting after a region), which measured
// several times slower than either alone.
#pragma once
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace fsad::cpu {

/// Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, on the calling thread.
inline void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
                static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                beta, c, static_cast<int>(ldc));
}

/// Same, split across the OpenMP threads along N (columns of C) or, when N is small, along M.
/// Call from outside a parallel region.
inline void parallel_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    const int nt = omp_get_max_threads();
    const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    if (nt <= 1 || work < 2e5) {
        sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const bool split_n = n >= m || n >= 64 * nt;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        if (split_n) {
            // column blocks rounded to 16 floats (one AVX-512 vector) so threads do not share cache lines
            int64_t chunk = ((n + T - 1) / T + 15) / 16 * 16;
            int64_t j0 = std::min<int64_t>(n, t * chunk), j1 = std::min<int64_t>(n, j0 + chunk);
            if (j1 > j0)
                sgemm(ta, tb, m, j1 - j0, k, alpha, a, lda, tb ? b + j0 * ldb : b + j0, ldb, beta, c + j0, ldc);
        } else {
            int64_t chunk = (m + T - 1) / T;
            int64_t i0 = std::min<int64_t>(m, t * chunk), i1 = std::min<int64_t>(m, i0 + chunk);
            if (i1 > i0)
                sgemm(ta, tb, i1 - i0, n, k, alpha, ta ? a + i0 : a + i0 * lda, lda, b, ldb, beta, c + i0 * ldc, ldc);
        }
    }
}

}  // namespace fsad::cpu
