// Kernels of the Gaussian density on the GPU (include/fsad/method/density.hpp states the method)
// and the launches of each stage; density.cu puts cuBLAS (Dsyrk, Strsm) and cuSOLVER (Dpotrf)
// between them. Built by nvcc into the backend and by the host compiler into the CPU tests (SIMT
// emulator, see device.cuh).
#pragma once
#include <cmath>

#include "device.cuh"

namespace fsad::cuda {
inline namespace FSAD_KERNEL_ABI {
namespace density {

// The factor that L2-normalises row r of f [n,d] (1 without l2), the same in every thread of
// the block (one block per row); a row with a non-finite value is recorded in *bad (the first).
__device__ double row_scale(const float* f, int64_t r, int64_t d, bool l2, int* bad) {
    double s = 0.0;
    bool finite = true;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        const double v = f[r * d + k];
        finite &= isfinite(v);
        s += v * v;
    }
    if (!finite) atomicMin(bad, static_cast<int>(r));
    __shared__ double scale;
    s = block_sum(s);
    if (threadIdx.x == 0) scale = l2 ? 1.0 / fmax(sqrt(s), 1e-12) : 1.0;
    __syncthreads();
    return scale;
}

// rows of f [n,d] -> double, optionally L2-normalised
__global__ void rows_to_double_k(const float* f, double* x, int64_t d, bool l2, int* bad) {
    const int64_t r = blockIdx.x;
    const double scale = row_scale(f, r, d, l2, bad);
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) x[r * d + k] = f[r * d + k] * scale;
}

__global__ void column_mean_k(const double* x, double* mu, int64_t n, int64_t d) {
    FSAD_GRID_LOOP(k, d) {
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) s += x[i * d + k];
        mu[k] = s / static_cast<double>(n);
    }
}

__global__ void centre_k(double* x, const double* mu, int64_t n, int64_t d) {
    FSAD_GRID_LOOP(i, n * d) x[i] -= mu[i % d];
}

// Ledoit-Wolf's moments, reduced in a fixed order (no atomics: a fit is the same run to run).
// part[2b], part[2b + 1] = block b's share of trace(S) and |S|_F^2, from the lower triangle of
// column-major S
__global__ void cov_stats_k(const double* S, int64_t d, double* part) {
    double tr = 0.0, fro = 0.0;
    FSAD_GRID_LOOP(idx, d * d) {
        const int64_t i = idx % d, j = idx / d;  // row i, column j
        if (i < j) continue;
        const double v = S[idx];
        fro += (i == j ? 1.0 : 2.0) * v * v;
        if (i == j) tr += v;
    }
    tr = block_sum(tr);
    fro = block_sum(fro);
    if (threadIdx.x == 0) {
        part[2 * blockIdx.x] = tr;
        part[2 * blockIdx.x + 1] = fro;
    }
}

// row4[r] = |xc_r|^4 (one block per row)
__global__ void row_norm4_k(const double* xc, int64_t d, double* row4) {
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) s += xc[blockIdx.x * d + k] * xc[blockIdx.x * d + k];
    s = block_sum(s);
    if (threadIdx.x == 0) row4[blockIdx.x] = s * s;
}

// acc = {trace, |S|_F^2, sum_r |xc_r|^4} from the partials (one block)
__global__ void __launch_bounds__(1024)
    moments_finish_k(const double* part, int64_t blocks, const double* row4, int64_t n, double* acc) {
    double tr = 0.0, fro = 0.0, r4 = 0.0;
    for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) {
        tr += part[2 * b];
        fro += part[2 * b + 1];
    }
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) r4 += row4[r];
    tr = block_sum(tr);
    fro = block_sum(fro);
    r4 = block_sum(r4);
    if (threadIdx.x == 0) {
        acc[0] = tr;
        acc[1] = fro;
        acc[2] = r4;
    }
}

__global__ void shrink_k(double* S, int64_t d, double scale, double diag) {
    FSAD_GRID_LOOP(idx, d * d) {
        const int64_t i = idx % d, j = idx / d;
        if (i < j) continue;
        S[idx] = S[idx] * scale + (i == j ? diag : 0.0);
    }
}

// z_j = normalise(f_j) - mu as column j of a column-major [d, m] matrix (= row-major [m, d])
__global__ void centre_rows_k(const float* f, const float* mu, float* z, int64_t d, bool l2, int* bad) {
    const int64_t r = blockIdx.x;
    const float scale = static_cast<float>(row_scale(f, r, d, l2, bad));
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) z[r * d + k] = f[r * d + k] * scale - mu[k];
}

__global__ void column_norm_k(const float* y, float* out, int64_t d) {
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) s += static_cast<double>(y[blockIdx.x * d + k]) * y[blockIdx.x * d + k];
    s = block_sum(s);
    if (threadIdx.x == 0) out[blockIdx.x] = static_cast<float>(sqrt(s));
}

// ---- the launches of each stage (features f [n, d] row-major; *bad starts at INT_MAX and ends
// at the first row with a non-finite value, if any)

/// x = rows of f in double, L2-normalised with l2
template <class Launch>
void rows_to_double(Launch& launch, const float* f, double* x, int64_t n, int64_t d, bool l2, int* bad) {
    launch(rows_to_double_k, static_cast<unsigned>(n), kThreads, f, x, d, l2, bad);
}
/// mu = column means of x [n, d]; x -= mu
template <class Launch>
void centre(Launch& launch, double* x, double* mu, int64_t n, int64_t d) {
    launch(column_mean_k, blocks_for(d), kThreads, static_cast<const double*>(x), mu, n, d);
    launch(centre_k, blocks_for(n * d), kThreads, x, static_cast<const double*>(mu), n, d);
}
/// Blocks of the covariance statistics over d x d values.
inline unsigned moment_blocks(int64_t d) { return std::min<unsigned>(blocks_for(d * d), 1024); }
/// Scratch of moments(): doubles.
inline size_t moments_scratch(int64_t n, int64_t d) { return 2 * static_cast<size_t>(moment_blocks(d)) + static_cast<size_t>(n); }
/// acc[3] = trace(S), |S|_F^2 (S column-major [d, d], lower triangle set) and sum_i |xc_i|^4
/// over the centred rows xc [n, d]: Ledoit-Wolf's moments. scratch: moments_scratch(n, d).
template <class Launch>
void moments(Launch& launch, const double* S, const double* xc, int64_t n, int64_t d, double* acc, double* scratch) {
    const unsigned blocks = moment_blocks(d);
    double* row4 = scratch + 2 * static_cast<size_t>(blocks);
    launch(cov_stats_k, blocks, kThreads, S, d, scratch);
    launch(row_norm4_k, static_cast<unsigned>(n), kThreads, xc, d, row4);
    launch(moments_finish_k, 1, 1024, static_cast<const double*>(scratch), static_cast<int64_t>(blocks),
           static_cast<const double*>(row4), n, acc);
}
/// lower triangle of S <- S * scale + diag * I
template <class Launch>
void shrink(Launch& launch, double* S, int64_t d, double scale, double diag) {
    launch(shrink_k, blocks_for(d * d), kThreads, S, d, scale, diag);
}
/// z [m, d] = normalise(f) - mu
template <class Launch>
void centre_rows(Launch& launch, const float* f, const float* mu, float* z, int64_t m, int64_t d, bool l2, int* bad) {
    launch(centre_rows_k, static_cast<unsigned>(m), kThreads, f, mu, z, d, l2, bad);
}
/// out [m] = |row i of y [m, d]|
template <class Launch>
void row_norms(Launch& launch, const float* y, float* out, int64_t m, int64_t d) {
    launch(column_norm_k, static_cast<unsigned>(m), kThreads, y, out, d);
}

}  // namespace density
}  // namespace FSAD_KERNEL_ABI
}  // namespace fsad::cuda
