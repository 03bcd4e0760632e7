// The patch scorers' kernels on the GPU (src/cpu/patch.cpp states what each computes) and their
// launches; patch.cu puts cuBLAS's products between them. Built by nvcc into the backend and by
// the host compiler into the CPU tests (SIMT emulator, see device.cuh).
#pragma once
#include <cmath>

#include "device.cuh"
#include "fsad/detail/math.hpp"

namespace fsad::cuda {
inline namespace FSAD_KERNEL_ABI {
namespace patch {

// one thread per output value: plane p, row Y, column X
template <class I>
__global__ void resize_bilinear_k(const float* x, float* y, int64_t h, int64_t w, int64_t H, int64_t W, float sy, float sx,
                                  I n) {
    FSAD_INDEX_LOOP(I, j, n) {
        const I plane = j / static_cast<I>(H * W), rem = j - plane * static_cast<I>(H * W);
        const I Y = rem / static_cast<I>(W), X = rem - Y * static_cast<I>(W);
        const math::BilinearTap ty = math::bilinear_tap(static_cast<int64_t>(Y), h, sy);
        const math::BilinearTap tx = math::bilinear_tap(static_cast<int64_t>(X), w, sx);
        y[j] = math::bilinear_at(x + static_cast<int64_t>(plane) * h * w, w, ty, tx);
    }
}

// one thread per output value y[i, p, k] = x[i, k, p] (writes coalesced)
template <class I>
__global__ void channels_last_k(const float* x, float* y, int64_t c, int64_t s, I n) {
    FSAD_INDEX_LOOP(I, j, n) {
        const I i = j / static_cast<I>(s * c), rem = j - i * static_cast<I>(s * c);
        const I p = rem / static_cast<I>(c), k = rem - p * static_cast<I>(c);
        y[j] = x[(static_cast<int64_t>(i) * c + k) * s + p];
    }
}

// One block per query row r of the chunk: the first minimum over j of sq[j] - 2 g[r, j] (g =
// q . b^T of the chunk, [rows, M]), then the distance to that bank row computed directly in
// double. Ties go to the smaller j, as the CPU's scan.
__global__ void nearest_k(const float* g, const float* sq, const float* q, const float* bank, float* out, int64_t M,
                          int64_t C) {
    const int64_t r = blockIdx.x;
    const float* gr = g + r * M;
    float bd = INFINITY;
    int64_t best = M;  // no candidate yet (a thread with no column, or only NaN)
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
        const float d = sq[j] - 2.0f * gr[j];
        if (d < bd) {
            bd = d;
            best = j;
        }
    }
    __shared__ float vals[kThreads];
    __shared__ int64_t idx[kThreads];
    vals[threadIdx.x] = bd;
    idx[threadIdx.x] = best;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (static_cast<int>(threadIdx.x) < half) {
            const float ov = vals[threadIdx.x + half];
            const int64_t oi = idx[threadIdx.x + half];
            if (ov < vals[threadIdx.x] || (ov == vals[threadIdx.x] && oi < idx[threadIdx.x])) {
                vals[threadIdx.x] = ov;
                idx[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    const int64_t j = idx[0] < M ? idx[0] : 0;  // every value NaN: row 0, as the CPU (a NaN distance)
    const float* a = q + r * C;
    const float* b = bank + j * C;
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < C; k += blockDim.x) {
        const double e = static_cast<double>(a[k]) - static_cast<double>(b[k]);
        s += e * e;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) out[r] = static_cast<float>(sqrt(s));
}

// one pass of the separable blur, one thread per output value: along W (stride 1) or along H
template <class I>
__global__ void blur_pass_k(const float* x, float* y, const double* k, int64_t r, int64_t H, int64_t W, bool along_w, I n) {
    FSAD_INDEX_LOOP(I, j, n) {
        const I plane = j / static_cast<I>(H * W), rem = j - plane * static_cast<I>(H * W);
        const I row = rem / static_cast<I>(W), col = rem - row * static_cast<I>(W);
        const int64_t len = along_w ? W : H, i = along_w ? static_cast<int64_t>(col) : static_cast<int64_t>(row);
        const int64_t step = along_w ? 1 : W;
        const float* line = x + static_cast<int64_t>(plane) * H * W + (along_w ? static_cast<int64_t>(row) * W : static_cast<int64_t>(col));
        double acc = 0.0;
        if (i - r >= 0 && i + r < len) {
            for (int64_t t = -r; t <= r; ++t) acc += k[t + r] * line[(i + t) * step];
        } else {
            for (int64_t t = -r; t <= r; ++t) acc += k[t + r] * line[math::reflect_index(i + t, len) * step];
        }
        y[j] = static_cast<float>(acc);
    }
}

// one block per row: the NaN-propagating maximum
__global__ void row_max_k(const float* x, float* y, int64_t K) {
    const float* row = x + static_cast<int64_t>(blockIdx.x) * K;
    float m = row[0];
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) m = math::max_nan(m, row[k]);
    __shared__ float part[kThreads];
    part[threadIdx.x] = m;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (static_cast<int>(threadIdx.x) < half) part[threadIdx.x] = math::max_nan(part[threadIdx.x], part[threadIdx.x + half]);
        __syncthreads();
    }
    if (threadIdx.x == 0) y[blockIdx.x] = part[0];
}

template <class Launch>
void resize_bilinear(Launch& launch, const float* x, float* y, int64_t planes, int64_t h, int64_t w, int64_t H, int64_t W) {
    const float sy = static_cast<float>(h) / static_cast<float>(H), sx = static_cast<float>(w) / static_cast<float>(W);
    launch_indexed(launch, resize_bilinear_k<uint32_t>, resize_bilinear_k<int64_t>, planes * H * W, x, y, h, w, H, W, sy,
                   sx);
}
template <class Launch>
void channels_last(Launch& launch, const float* x, float* y, int64_t n, int64_t c, int64_t s) {
    launch_indexed(launch, channels_last_k<uint32_t>, channels_last_k<int64_t>, n * c * s, x, y, c, s);
}
/// rows query rows of one chunk: g [rows, M] their products with the bank; out [rows].
template <class Launch>
void nearest(Launch& launch, const float* g, const float* sq, const float* q, const float* bank, float* out, int64_t rows,
             int64_t M, int64_t C) {
    launch(nearest_k, static_cast<unsigned>(rows), kThreads, g, sq, q, bank, out, M, C);
}

/// taps [2r + 1] on the device; tmp: planes * H * W floats
template <class Launch>
void gaussian_blur(Launch& launch, const float* x, float* tmp, float* y, const double* taps, int64_t r, int64_t planes,
                   int64_t H, int64_t W) {
    const int64_t n = planes * H * W;
    launch_indexed(launch, blur_pass_k<uint32_t>, blur_pass_k<int64_t>, n, x, tmp, taps, r, H, W, false);
    launch_indexed(launch, blur_pass_k<uint32_t>, blur_pass_k<int64_t>, n, tmp, y, taps, r, H, W, true);
}
template <class Launch>
void row_max(Launch& launch, const float* x, float* y, int64_t R, int64_t K) {
    launch(row_max_k, static_cast<unsigned>(R), kThreads, x, y, K);
}

}  // namespace patch
}  // namespace FSAD_KERNEL_ABI
}  // namespace fsad::cuda
