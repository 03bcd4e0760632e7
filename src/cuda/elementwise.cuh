// Element-wise, row-wise and reduction kernels, and the launches of each op. The arithmetic is
// fsad/detail/math.hpp's (shared with the CPU loops); the formulas and gradient rules are those
// stated at the top of src/cpu/elementwise.cpp and src/cpu/rowwise.cpp. Reductions accumulate in
// double (as the CPU does) and are deterministic: no atomics except in scatter_add_rows, whose
// repeated indices must add. Built by nvcc into the backend (elementwise.cu) and by the host
// compiler into the CPU tests (SIMT emulator, see device.cuh).
#pragma once
#include <cmath>

#include "device.cuh"
#include "fsad/detail/math.hpp"

namespace fsad::cuda {
inline namespace FSAD_KERNEL_ABI {
namespace ew {

__global__ void fill_k(float* p, int64_t n, float v) {
    FSAD_GRID_LOOP(i, n) p[i] = v;
}
__global__ void activation_k(const float* x, float* y, int64_t n, math::Activation a) {
    FSAD_GRID_LOOP(i, n) y[i] = math::activation(x[i], a);
}
__global__ void activation_grad_k(const float* y, const float* dy, float* dx, int64_t n, math::Activation a) {
    FSAD_GRID_LOOP(i, n) dx[i] = math::activation_grad(y[i], dy[i], a);
}
__global__ void axpby_k(float alpha, const float* a, float beta, const float* b, float* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = alpha * a[i] + beta * b[i];
}
__global__ void mul_k(const float* a, const float* b, float* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = a[i] * b[i];
}
__global__ void affine_k(const float* x, float alpha, float beta, float* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = alpha * x[i] + beta;
}
__global__ void round_bf16_k(const float* x, float* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = math::round_bf16(x[i]);
}
// bfloat16 operands of the BF16 convolutions (conv.cu), stored as their bits
__global__ void to_bf16_k(const float* x, uint16_t* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = math::bf16_bits(x[i]);
}
__global__ void from_bf16_k(const uint16_t* x, float* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = math::bf16_float(x[i]);
}
__global__ void adam_k(float* p, const float* g, float* m, float* v, int64_t n, math::AdamStep s) {
    FSAD_GRID_LOOP(i, n) math::adam_update(p[i], g[i], m[i], v[i], s);
}
__global__ void ema_k(float* t, const float* o, int64_t n, float beta) {
    FSAD_GRID_LOOP(i, n) t[i] = math::ema(t[i], o[i], beta);
}
__global__ void add_bias_k(float* y, const float* b, int64_t rows, int64_t cols) {
    FSAD_GRID_LOOP(i, rows * cols) y[i] += b[i % cols];
}
// y[o*inner + k] = sum_i x[(o*n + i)*inner + k]: one thread per output, double accumulation
__global__ void sum_dim_k(const float* x, float* y, int64_t outer, int64_t n, int64_t inner) {
    FSAD_GRID_LOOP(j, outer * inner) {
        const int64_t o = j / inner, k = j % inner;
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) s += x[(o * n + i) * inner + k];
        y[j] = static_cast<float>(s);
    }
}
__global__ void sum_dim_backward_k(const float* dy, float* dx, int64_t outer, int64_t n, int64_t inner) {
    FSAD_GRID_LOOP(j, outer * n * inner) {
        const int64_t o = j / (n * inner), k = j % inner;
        dx[j] = dy[o * inner + k];
    }
}
// two-stage deterministic sum: block partials, then one block over the partials
__global__ void partial_sums_k(const float* x, int64_t n, double* partial) {
    double s = 0.0;
    FSAD_GRID_LOOP(i, n) s += x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void finish_sum_k(const double* partial, int n, float* y) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0) y[0] = static_cast<float>(s);
}
__global__ void gather_rows_k(const float* x, const int64_t* idx, float* y, int64_t m, int64_t row) {
    FSAD_GRID_LOOP(j, m * row) y[j] = x[idx[j / row] * row + j % row];
}
__global__ void scatter_add_rows_k(const float* dy, const int64_t* idx, float* dx, int64_t m, int64_t row) {
    FSAD_GRID_LOOP(j, m * row) atomicAdd(dx + idx[j / row] * row + j % row, dy[j]);
}

// ---- row-wise (one block per row)
__global__ void l2_normalize_k(const float* x, float* y, int64_t d, float eps) {
    const float* xr = x + blockIdx.x * d;
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) s += static_cast<double>(xr[k]) * xr[k];
    __shared__ double r;
    s = block_sum(s);
    if (threadIdx.x == 0) r = fmax(sqrt(s), static_cast<double>(eps));
    __syncthreads();
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) y[blockIdx.x * d + k] = static_cast<float>(xr[k] / r);
}
__global__ void l2_normalize_backward_k(const float* x, const float* dy, float* dx, int64_t d, float eps) {
    const float* xr = x + blockIdx.x * d;
    const float* g = dy + blockIdx.x * d;
    double s = 0.0, xg = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        s += static_cast<double>(xr[k]) * xr[k];
        xg += static_cast<double>(xr[k]) * g[k];
    }
    __shared__ double nx2, dot;
    s = block_sum(s);
    if (threadIdx.x == 0) nx2 = s;
    xg = block_sum(xg);
    if (threadIdx.x == 0) dot = xg;
    __syncthreads();
    const double nx = sqrt(nx2);
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x)
        dx[blockIdx.x * d + k] = nx > eps ? static_cast<float>(g[k] / nx - xr[k] * dot / (nx2 * nx)) : static_cast<float>(g[k] / eps);
}
// this thread's share of |a|^2, |b|^2 and a.b over a row of d values
__device__ inline void row_dots(const float* ar, const float* br, int64_t d, double& aa, double& bb, double& ab) {
    aa = bb = ab = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        aa += static_cast<double>(ar[k]) * ar[k];
        bb += static_cast<double>(br[k]) * br[k];
        ab += static_cast<double>(ar[k]) * br[k];
    }
}
__global__ void cosine_k(const float* a, const float* b, float* c, int64_t d, float eps) {
    const float* ar = a + blockIdx.x * d;
    const float* br = b + blockIdx.x * d;
    double aa, bb, ab;
    row_dots(ar, br, d, aa, bb, ab);
    aa = block_sum(aa);
    bb = block_sum(bb);
    ab = block_sum(ab);
    if (threadIdx.x == 0) c[blockIdx.x] = static_cast<float>(ab / fmax(sqrt(aa * bb), static_cast<double>(eps)));
}
__global__ void cosine_backward_k(const float* a, const float* b, const float* dc, float* da, float* db, int64_t d,
                                  float eps) {
    const float* ar = a + blockIdx.x * d;
    const float* br = b + blockIdx.x * d;
    double aa, bb, ab;
    row_dots(ar, br, d, aa, bb, ab);
    __shared__ double na2, nb2, nab;
    aa = block_sum(aa);
    if (threadIdx.x == 0) na2 = aa;
    bb = block_sum(bb);
    if (threadIdx.x == 0) nb2 = bb;
    ab = block_sum(ab);
    if (threadIdx.x == 0) nab = ab;
    __syncthreads();
    const double raw = sqrt(na2 * nb2), g = dc[blockIdx.x];
    const double c = nab / raw;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        if (raw > eps) {
            if (da) da[blockIdx.x * d + k] = static_cast<float>(g * (br[k] / raw - c * ar[k] / na2));
            if (db) db[blockIdx.x * d + k] = static_cast<float>(g * (ar[k] / raw - c * br[k] / nb2));
        } else {
            if (da) da[blockIdx.x * d + k] = static_cast<float>(g * br[k] / eps);
            if (db) db[blockIdx.x * d + k] = static_cast<float>(g * ar[k] / eps);
        }
    }
}

// ---- the launches of each op (n values; rows of d values, one block per row)
template <class Launch>
void fill(Launch& launch, float* p, int64_t n, float v) {
    launch(fill_k, blocks_for(n), kThreads, p, n, v);
}
template <class Launch>
void activation(Launch& launch, const float* x, float* y, int64_t n, math::Activation a) {
    launch(activation_k, blocks_for(n), kThreads, x, y, n, a);
}
template <class Launch>
void activation_grad(Launch& launch, const float* y, const float* dy, float* dx, int64_t n, math::Activation a) {
    launch(activation_grad_k, blocks_for(n), kThreads, y, dy, dx, n, a);
}
template <class Launch>
void axpby(Launch& launch, float alpha, const float* a, float beta, const float* b, float* y, int64_t n) {
    launch(axpby_k, blocks_for(n), kThreads, alpha, a, beta, b, y, n);
}
template <class Launch>
void mul(Launch& launch, const float* a, const float* b, float* y, int64_t n) {
    launch(mul_k, blocks_for(n), kThreads, a, b, y, n);
}
template <class Launch>
void affine(Launch& launch, const float* x, float alpha, float beta, float* y, int64_t n) {
    launch(affine_k, blocks_for(n), kThreads, x, alpha, beta, y, n);
}
template <class Launch>
void round_bf16(Launch& launch, const float* x, float* y, int64_t n) {
    launch(round_bf16_k, blocks_for(n), kThreads, x, y, n);
}
template <class Launch>
void to_bf16(Launch& launch, const float* x, uint16_t* y, int64_t n) {
    launch(to_bf16_k, blocks_for(n), kThreads, x, y, n);
}
template <class Launch>
void from_bf16(Launch& launch, const uint16_t* x, float* y, int64_t n) {
    launch(from_bf16_k, blocks_for(n), kThreads, x, y, n);
}
template <class Launch>
void adam(Launch& launch, float* p, const float* g, float* m, float* v, int64_t n, const math::AdamStep& s) {
    launch(adam_k, blocks_for(n), kThreads, p, g, m, v, n, s);
}
template <class Launch>
void ema(Launch& launch, float* t, const float* o, int64_t n, float beta) {
    launch(ema_k, blocks_for(n), kThreads, t, o, n, beta);
}
template <class Launch>
void add_bias(Launch& launch, float* y, const float* b, int64_t rows, int64_t cols) {
    launch(add_bias_k, blocks_for(rows * cols), kThreads, y, b, rows, cols);
}
template <class Launch>
void sum_dim(Launch& launch, const float* x, float* y, int64_t outer, int64_t n, int64_t inner) {
    launch(sum_dim_k, blocks_for(outer * inner), kThreads, x, y, outer, n, inner);
}
template <class Launch>
void sum_dim_backward(Launch& launch, const float* dy, float* dx, int64_t outer, int64_t n, int64_t inner) {
    launch(sum_dim_backward_k, blocks_for(outer * n * inner), kThreads, dy, dx, outer, n, inner);
}
/// Blocks of the first pass of sum_all over n values (its scratch: that many doubles).
inline int sum_all_blocks(int64_t n) {
    return static_cast<int>(std::min<int64_t>(1024, std::max<int64_t>(1, (n + kThreads - 1) / kThreads)));
}
template <class Launch>
void sum_all(Launch& launch, const float* x, int64_t n, float* y, double* partial) {
    const int blocks = sum_all_blocks(n);
    launch(partial_sums_k, blocks, kThreads, x, n, partial);
    launch(finish_sum_k, 1, 1024, static_cast<const double*>(partial), blocks, y);
}
template <class Launch>
void gather_rows(Launch& launch, const float* x, const int64_t* idx, float* y, int64_t m, int64_t row) {
    launch(gather_rows_k, blocks_for(m * row), kThreads, x, idx, y, m, row);
}
template <class Launch>
void scatter_add_rows(Launch& launch, const float* dy, const int64_t* idx, float* dx, int64_t m, int64_t row) {
    launch(scatter_add_rows_k, blocks_for(m * row), kThreads, dy, idx, dx, m, row);
}
template <class Launch>
void l2_normalize(Launch& launch, const float* x, float* y, int64_t rows, int64_t d, float eps) {
    launch(l2_normalize_k, static_cast<unsigned>(rows), kThreads, x, y, d, eps);
}
template <class Launch>
void l2_normalize_backward(Launch& launch, const float* x, const float* dy, float* dx, int64_t rows, int64_t d, float eps) {
    launch(l2_normalize_backward_k, static_cast<unsigned>(rows), kThreads, x, dy, dx, d, eps);
}
template <class Launch>
void cosine(Launch& launch, const float* a, const float* b, float* c, int64_t rows, int64_t d, float eps) {
    launch(cosine_k, static_cast<unsigned>(rows), kThreads, a, b, c, d, eps);
}
template <class Launch>
void cosine_backward(Launch& launch, const float* a, const float* b, const float* dc, float* da, float* db, int64_t rows,
                     int64_t d, float eps) {
    launch(cosine_backward_k, static_cast<unsigned>(rows), kThreads, a, b, dc, da, db, d, eps);
}

}  // namespace ew
}  // namespace FSAD_KERNEL_ABI
}  // namespace fsad::cuda
