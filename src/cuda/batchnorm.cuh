// Batch normalisation kernels with the fused activation, and the sequences that launch them;
// the formulas are those at the top of src/cpu/batchnorm.cpp. Built by nvcc into the backend
// (batchnorm.cu: scratch, stream, tensors) and by the host compiler into the CPU tests, which run
// them on the SIMT emulator (see device.cuh).
//
// Statistics: blocks sum slices of each channel around a shift (the channel's first value) in
// double, as the CPU does; a per-channel kernel combines them, updates the running statistics and
// writes scale/shift; an element-wise kernel normalises. Backward: the same split sums of
// g = a'(y) dy and g * xhat; an element-wise kernel forms dx.
// Indexing: every kernel walks whole (image, channel) planes, so the channel of a value is known
// per block and no thread divides a 64-bit index per element (a 64-bit division is some dozens
// of instructions on the GPU: it would make these memory-bound passes compute-bound).
#pragma once
#include "device.cuh"
#include "fsad/core/error.hpp"
#include "fsad/detail/math.hpp"

namespace fsad::cuda {
inline namespace FSAD_KERNEL_ABI {
namespace bn {

constexpr int kBnThreads = 512;

// Per-channel sums are split over `splits` blocks per channel (grid [splits, C]) so that the
// early layers (few channels, many values each) still fill the GPU; a second kernel combines the
// partial sums of each channel in a fixed order (deterministic). The values of channel c are
// cut into n * parts cells (cell = image b, part p of its plane) and block s of the channel sums
// the cells [cells * s / splits, cells * (s + 1) / splits).
struct Cells {
    int64_t n, c_count, hw, parts, splits;
};
// calls f(index) for every value of channel c in this block's cells
template <class F>
__device__ inline void for_values(const Cells& g, int64_t c, F&& f) {
    const int64_t cells = g.n * g.parts;
    const int64_t c0 = cells * blockIdx.x / g.splits, c1 = cells * (blockIdx.x + 1) / g.splits;
    if (g.parts == 1 && g.hw < blockDim.x && (c1 - c0) * g.hw < 0x7fffffffLL) {
        // planes smaller than the block (BatchNorm1d, the last stages at low resolution): the
        // threads share out the block's values of all its planes (32-bit division per value)
        const uint32_t hw = static_cast<uint32_t>(g.hw), total = static_cast<uint32_t>((c1 - c0) * g.hw);
        for (uint32_t t = threadIdx.x; t < total; t += blockDim.x) {
            const int64_t b = c0 + t / hw;
            f((b * g.c_count + c) * g.hw + t % hw);
        }
        return;
    }
    for (int64_t cell = c0; cell < c1; ++cell) {
        const int64_t b = cell / g.parts, p = cell - b * g.parts;
        const int64_t plane = (b * g.c_count + c) * g.hw, hi = g.hw * (p + 1) / g.parts;
        for (int64_t i = g.hw * p / g.parts + threadIdx.x; i < hi; i += blockDim.x) f(plane + i);
    }
}

__global__ void __launch_bounds__(kBnThreads) bn_partial_stats_k(const float* x, Cells g, double* part) {
    const int64_t c = blockIdx.y;
    const float k = x[c * g.hw];  // shift: the channel's first value
    double s = 0.0, s2 = 0.0;
    for_values(g, c, [&](int64_t at) {
        const double v = static_cast<double>(x[at]) - k;
        s += v;
        s2 += v * v;
    });
    s = block_sum(s);
    s2 = block_sum(s2);
    if (threadIdx.x == 0) {
        part[(c * g.splits + blockIdx.x) * 2] = s;
        part[(c * g.splits + blockIdx.x) * 2 + 1] = s2;
    }
}

__global__ void bn_finish_stats_k(const float* x, const double* part, int64_t n, int64_t c_count, int64_t hw, int64_t splits,
                                  const float* gamma, const float* beta, float* running_mean, float* running_var,
                                  float momentum, float eps, float* mean_out, float* invstd_out, float* scale, float* shift) {
    FSAD_GRID_LOOP(c, c_count) {
        double s = 0.0, s2 = 0.0;
        for (int64_t p = 0; p < splits; ++p) {
            s += part[(c * splits + p) * 2];
            s2 += part[(c * splits + p) * 2 + 1];
        }
        const float k = x[c * hw];
        const double md = static_cast<double>(n * hw);
        const double mu_shift = s / md;
        const double var = fmax(s2 / md - mu_shift * mu_shift, 0.0);
        const float mu = static_cast<float>(mu_shift + k);
        const float is = static_cast<float>(1.0 / sqrt(var + static_cast<double>(eps)));
        mean_out[c] = mu;
        invstd_out[c] = is;
        scale[c] = gamma[c] * is;
        shift[c] = beta[c] - mu * gamma[c] * is;
        running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mu;
        running_var[c] = (1.0f - momentum) * running_var[c] + momentum * static_cast<float>(var * md / (md > 1 ? md - 1 : 1));
    }
}

__global__ void bn_eval_coeffs_k(const float* gamma, const float* beta, const float* rm, const float* rv, float eps,
                                 int64_t c_count, float* scale, float* shift) {
    FSAD_GRID_LOOP(c, c_count) { math::bn_eval_affine(gamma[c], beta[c], rm[c], rv[c], eps, scale[c], shift[c]); }
}

__global__ void bn_invstd_k(const float* var, float eps, int64_t c_count, float* invstd) {
    FSAD_GRID_LOOP(c, c_count) invstd[c] = math::bn_invstd(var[c], eps);
}

// The element-wise passes walk the values of a plane with the channel known: one block per (image,
// channel) plane (grid [n * C]) for planes of 256 values and more, else a grid-stride loop with a
// 32-bit division per value (Elementwise::flat).
struct Elementwise {
    int64_t c_count, hw;
    bool flat;
    uint32_t total;  // flat only
};
template <class F>
__device__ inline void for_planes(const Elementwise& e, F&& f) {  // f(index, channel)
    if (e.flat) {
        const uint32_t hw = static_cast<uint32_t>(e.hw), cc = static_cast<uint32_t>(e.c_count);
        FSAD_INDEX_LOOP(uint32_t, i, e.total) f(static_cast<int64_t>(i), static_cast<int64_t>((i / hw) % cc));
        return;
    }
    const int64_t plane = blockIdx.x, at = plane * e.hw, c = plane % e.c_count;
    for (int64_t i = threadIdx.x; i < e.hw; i += blockDim.x) f(at + i, c);
}

// y = act(x * scale[c] + shift[c] (+ r)): r, a residual of x's shape, or null
__global__ void bn_apply_k(const float* x, const float* r, float* y, Elementwise e, const float* scale, const float* shift,
                           math::Activation act) {
    for_planes(e, [&](int64_t i, int64_t c) {
        const float v = x[i] * scale[c] + shift[c];
        y[i] = math::activation(r ? v + r[i] : v, act);
    });
}

__global__ void __launch_bounds__(kBnThreads)
    bn_backward_partial_k(const float* x, const float* dy, const float* y, Cells g, const float* mean, const float* invstd,
                          math::Activation act, double* part) {
    const int64_t c = blockIdx.y;
    const float mu = mean[c], is = invstd[c];
    double s = 0.0, sx = 0.0;
    for_values(g, c, [&](int64_t at) {
        const float gr = act == math::Activation::Identity ? dy[at] : math::activation_grad(y[at], dy[at], act);
        s += gr;
        sx += static_cast<double>(gr) * ((x[at] - mu) * is);
    });
    s = block_sum(s);
    sx = block_sum(sx);
    if (threadIdx.x == 0) {
        part[(c * g.splits + blockIdx.x) * 2] = s;
        part[(c * g.splits + blockIdx.x) * 2 + 1] = sx;
    }
}

// sum_g, sum_gx: the sums dx needs; dbeta = sum_g and dgamma = sum_gx where wanted (else null)
__global__ void bn_finish_backward_k(const double* part, int64_t c_count, int64_t splits, float* sum_g, float* sum_gx,
                                     float* dbeta, float* dgamma) {
    FSAD_GRID_LOOP(c, c_count) {
        double s = 0.0, sx = 0.0;
        for (int64_t p = 0; p < splits; ++p) {
            s += part[(c * splits + p) * 2];
            sx += part[(c * splits + p) * 2 + 1];
        }
        sum_g[c] = static_cast<float>(s);
        sum_gx[c] = static_cast<float>(sx);
        if (dbeta) dbeta[c] = static_cast<float>(s);
        if (dgamma) dgamma[c] = static_cast<float>(sx);
    }
}

__global__ void bn_backward_dx_k(const float* x, const float* dy, const float* y, float* dx, int64_t m, Elementwise e,
                                 const float* gamma, const float* mean, const float* invstd, const float* sum_g,
                                 const float* sum_gx, bool batch_stats, math::Activation act) {
    const float inv_m = 1.0f / static_cast<float>(m);
    for_planes(e, [&](int64_t i, int64_t c) {
        const float g = act == math::Activation::Identity ? dy[i] : math::activation_grad(y[i], dy[i], act);
        const float k = gamma[c] * invstd[c];
        if (batch_stats) {
            const float xhat = (x[i] - mean[c]) * invstd[c];
            dx[i] = k * (g - sum_g[c] * inv_m - xhat * sum_gx[c] * inv_m);
        } else {
            dx[i] = k * g;
        }
    });
}

struct Layout {
    int64_t n, c, hw;  ///< images, channels, values per plane (1 for [N, C])
};

// blocks per channel: enough blocks in all (>= 1024) while each keeps >= 4 values per thread;
// planes are cut in parts only when there are fewer images than wanted blocks
inline Cells cells_for(const Layout& L) {  // L.n * L.hw > 0
    const int64_t m = L.n * L.hw;
    const int64_t want = std::clamp<int64_t>((1024 + L.c - 1) / L.c, 1, std::max<int64_t>(1, m / (4 * kBnThreads)));
    const int64_t parts = std::clamp<int64_t>((want + L.n - 1) / L.n, 1, std::max<int64_t>(1, L.hw / (4 * kBnThreads)));
    return {L.n, L.c, L.hw, parts, std::min(want, L.n * parts)};
}

// The launch of an element-wise pass (for_planes): a block of 256 threads per plane of 256 values
// and more, else (small planes: a block each would be mostly idle, and many) a flat grid-stride
// loop with a 32-bit division per value.
struct Pass {
    Elementwise e;
    unsigned blocks, threads;
};
inline Pass elementwise(const Layout& L) {
    const int64_t total = L.n * L.c * L.hw;
    if (L.hw < 256 && total < 0x7fffffffLL)
        return {{L.c, L.hw, true, static_cast<uint32_t>(total)}, blocks_for(total), static_cast<unsigned>(kThreads)};
    FSAD_CHECK(L.n * L.c <= 0x7fffffffLL, "batch norm: ", L.n * L.c, " planes exceed the CUDA grid");
    return {{L.c, L.hw, false, 0}, static_cast<unsigned>(L.n * L.c),
            static_cast<unsigned>(std::clamp<int64_t>((L.hw + 31) / 32 * 32, 32, 256))};
}

/// Launch plan of one batch norm call on layout L (L.n * L.hw > 0, L.c > 0) and its scratch.
struct Plan {
    Layout L;
    Cells cells;
    Pass pass;
    size_t part_count() const { return static_cast<size_t>(2 * L.c * cells.splits); }  ///< doubles
    size_t coeff_count() const { return static_cast<size_t>(2 * L.c); }                  ///< floats
};
inline Plan plan(const Layout& L) {
    FSAD_CHECK(L.c <= 65535, "batch norm: ", L.c, " channels exceed the CUDA grid's second dimension");
    return {L, cells_for(L), elementwise(L)};
}

/// Training forward: batch statistics into mean/invstd, running statistics updated, y written.
/// Scratch: part [part_count()] doubles, coeff [coeff_count()] floats.
template <class Launch>
void forward_train(Launch& launch, const Plan& p, const float* x, const float* gamma, const float* beta,
                   float* running_mean, float* running_var, float momentum, float eps, float* mean, float* invstd, float* y,
                   math::Activation act, double* part, float* coeff) {
    const Layout& L = p.L;
    launch(bn_partial_stats_k, dim3(static_cast<unsigned>(p.cells.splits), static_cast<unsigned>(L.c)), kBnThreads, x,
           p.cells, part);
    launch(bn_finish_stats_k, blocks_for(L.c), kThreads, x, part, L.n, L.c, L.hw, p.cells.splits, gamma, beta, running_mean,
           running_var, momentum, eps, mean, invstd, coeff, coeff + L.c);
    launch(bn_apply_k, p.pass.blocks, p.pass.threads, x, static_cast<const float*>(nullptr), y, p.pass.e, coeff, coeff + L.c,
           act);
}

/// Inference: y = act(x * scale + shift (+ residual)) with the running statistics (residual may
/// be null; y may be x). Scratch: coeff [coeff_count()] floats.
template <class Launch>
void forward_eval(Launch& launch, const Plan& p, const float* x, const float* gamma, const float* beta,
                  const float* running_mean, const float* running_var, float eps, const float* residual, float* y,
                  math::Activation act, float* coeff) {
    const Layout& L = p.L;
    launch(bn_eval_coeffs_k, blocks_for(L.c), kThreads, gamma, beta, running_mean, running_var, eps, L.c, coeff, coeff + L.c);
    launch(bn_apply_k, p.pass.blocks, p.pass.threads, x, residual, y, p.pass.e, coeff, coeff + L.c, act);
}

/// invstd [c_count] = 1 / sqrt(var + eps): the evaluation-mode backward's scale.
template <class Launch>
void invstd(Launch& launch, const float* var, float eps, int64_t c_count, float* out) {
    launch(bn_invstd_k, blocks_for(c_count), kThreads, var, eps, c_count, out);
}

/// Backward through act(batchnorm(x)): y is the fused output (null when act is Identity); dx,
/// dgamma, dbeta where wanted (else null). Scratch: part [part_count()] doubles, sums
/// [coeff_count()] floats.
template <class Launch>
void backward(Launch& launch, const Plan& p, const float* x, const float* gamma, const float* mean, const float* invstd,
              bool batch_stats, const float* dy, const float* y, math::Activation act, float* dx, float* dgamma, float* dbeta,
              double* part, float* sums) {
    const Layout& L = p.L;
    launch(bn_backward_partial_k, dim3(static_cast<unsigned>(p.cells.splits), static_cast<unsigned>(L.c)), kBnThreads, x,
           dy, y, p.cells, mean, invstd, act, part);
    launch(bn_finish_backward_k, blocks_for(L.c), kThreads, part, L.c, p.cells.splits, sums, sums + L.c, dbeta, dgamma);
    if (dx)
        launch(bn_backward_dx_k, p.pass.blocks, p.pass.threads, x, dy, y, dx, L.n * L.hw, p.pass.e, gamma, mean, invstd,
               sums, sums + L.c, batch_stats, act);
}

}  // namespace bn
}  // namespace FSAD_KERNEL_ABI
}  // namespace fsad::cuda
