// Batch normalisation on the GPU with the fused activation; the formulas are those at the top of
// src/cpu/batchnorm.cpp. Statistics: blocks sum slices of each channel around a shift (the
// channel's first value) in double, as the CPU does; a per-channel kernel combines them, updates
// the running statistics and writes scale/shift; an element-wise kernel normalises.
// Backward: the same split sums of g = a'(y) dy and g * xhat; an element-wise kernel forms dx.
// Indexing: every kernel walks whole (image, channel) planes, so the channel of a value is known
// per block and no thread divides a 64-bit index per element (a 64-bit division is some dozens
// of instructions on the GPU: it would make these memory-bound passes compute-bound).
#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

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

__global__ void bn_partial_stats_k(const float* x, Cells g, double* part) {
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

__global__ void bn_backward_partial_k(const float* x, const float* dy, const float* y, Cells g, const float* mean,
                                      const float* invstd, math::Activation act, double* part) {
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

__global__ void bn_finish_backward_k(const double* part, int64_t c_count, int64_t splits, float* sum_g, float* sum_gx) {
    FSAD_GRID_LOOP(c, c_count) {
        double s = 0.0, sx = 0.0;
        for (int64_t p = 0; p < splits; ++p) {
            s += part[(c * splits + p) * 2];
            sx += part[(c * splits + p) * 2 + 1];
        }
        sum_g[c] = static_cast<float>(s);
        sum_gx[c] = static_cast<float>(sx);
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
    int64_t n, c, hw;
};
Layout layout(const Tensor& x) { return {x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1}; }

// blocks per channel: enough blocks in all (>= 1024) while each keeps >= 4 values per thread;
// planes are cut in parts only when there are fewer images than wanted blocks
Cells cells_for(const Layout& L) {  // L.n * L.hw > 0
    const int64_t m = L.n * L.hw;
    const int64_t want = std::clamp<int64_t>((1024 + L.c - 1) / L.c, 1, std::max<int64_t>(1, m / (4 * kBnThreads)));
    const int64_t parts = std::clamp<int64_t>((want + L.n - 1) / L.n, 1, std::max<int64_t>(1, L.hw / (4 * kBnThreads)));
    return {L.n, L.c, L.hw, parts, std::min(want, L.n * parts)};
}

// The launch of an element-wise pass (for_planes): a block of 256 threads per plane of 256 values
// and more, else (small planes: a block each would be mostly idle, and many) a flat grid-stride
// loop with a 32-bit division per value.
struct Launch {
    Elementwise e;
    unsigned blocks, threads;
};
Launch elementwise(const Layout& L) {
    const int64_t total = L.n * L.c * L.hw;
    if (L.hw < 256 && total < 0x7fffffffLL)
        return {{L.c, L.hw, true, static_cast<uint32_t>(total)}, blocks_for(total), static_cast<unsigned>(kThreads)};
    FSAD_CHECK(L.n * L.c <= 0x7fffffffLL, "batch norm: ", L.n * L.c, " planes exceed the CUDA grid");
    return {{L.c, L.hw, false, 0}, static_cast<unsigned>(L.n * L.c),
            static_cast<unsigned>(std::clamp<int64_t>((L.hw + 31) / 32 * 32, 32, 256))};
}

}  // namespace

void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float momentum, float eps, const Tensor& mean, const Tensor& invstd,
                             const Tensor& y, math::Activation act) {
    const Layout L = layout(x);
    if (L.n * L.hw == 0 || L.c == 0) return;
    const int dev = x.device().index;
    cudaStream_t s = context(dev).stream;
    auto* coeff = static_cast<float*>(alloc(dev, 2 * L.c * sizeof(float)));
    const Cells g = cells_for(L);
    const size_t part_bytes = static_cast<size_t>(2 * L.c * g.splits) * sizeof(double);
    auto* part = static_cast<double*>(alloc(dev, part_bytes));
    bn_partial_stats_k<<<dim3(static_cast<unsigned>(g.splits), static_cast<unsigned>(L.c)), kBnThreads, 0, s>>>(x.data(), g,
                                                                                                              part);
    FSAD_CUDA_LAUNCH_CHECK();
    bn_finish_stats_k<<<blocks_for(L.c), kThreads, 0, s>>>(x.data(), part, L.n, L.c, L.hw, g.splits, gamma.data(),
                                                           beta.data(), running_mean.data(), running_var.data(), momentum,
                                                           eps, mean.data(), invstd.data(), coeff, coeff + L.c);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, part, part_bytes);
    const Launch la = elementwise(L);
    bn_apply_k<<<la.blocks, la.threads, 0, s>>>(x.data(), nullptr, y.data(), la.e, coeff, coeff + L.c, act);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, coeff, 2 * L.c * sizeof(float));
}

void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                            const Tensor& running_var, float eps, const Tensor& y, math::Activation act) {
    batchnorm_eval_residual(x, gamma, beta, running_mean, running_var, eps, nullptr, act, y);
}

void batchnorm_eval_residual(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float eps, const Tensor* residual, math::Activation act,
                             const Tensor& y) {
    const Layout L = layout(x);
    if (x.numel() == 0) return;
    const int dev = x.device().index;
    cudaStream_t s = context(dev).stream;
    auto* coeff = static_cast<float*>(alloc(dev, 2 * L.c * sizeof(float)));
    bn_eval_coeffs_k<<<blocks_for(L.c), kThreads, 0, s>>>(gamma.data(), beta.data(), running_mean.data(), running_var.data(),
                                                          eps, L.c, coeff, coeff + L.c);
    FSAD_CUDA_LAUNCH_CHECK();
    const Launch la = elementwise(L);
    bn_apply_k<<<la.blocks, la.threads, 0, s>>>(x.data(), residual ? residual->data() : nullptr, y.data(), la.e, coeff,
                                                coeff + L.c, act);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, coeff, 2 * L.c * sizeof(float));
}

void batchnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& invstd, bool batch_stats,
                        const Tensor& dy, const Tensor* y, math::Activation act, const Tensor* dx, const Tensor* dgamma,
                        const Tensor* dbeta) {
    const Layout L = layout(x);
    if (L.c == 0) return;
    if (L.n * L.hw == 0) {  // no values: zero parameter gradients, an empty dx
        if (dgamma) fill(*dgamma, 0.0f);
        if (dbeta) fill(*dbeta, 0.0f);
        return;
    }
    const int dev = x.device().index;
    cudaStream_t s = context(dev).stream;
    const float* yp = (y && act != math::Activation::Identity) ? y->data() : nullptr;
    if (act != math::Activation::Identity && !yp) throw Error("batchnorm_backward: the fused output y is needed for the activation");
    auto* sums = static_cast<float*>(alloc(dev, 2 * L.c * sizeof(float)));
    const Cells g = cells_for(L);
    const size_t part_bytes = static_cast<size_t>(2 * L.c * g.splits) * sizeof(double);
    auto* part = static_cast<double*>(alloc(dev, part_bytes));
    bn_backward_partial_k<<<dim3(static_cast<unsigned>(g.splits), static_cast<unsigned>(L.c)), kBnThreads, 0, s>>>(
        x.data(), dy.data(), yp, g, mean.data(), invstd.data(), act, part);
    FSAD_CUDA_LAUNCH_CHECK();
    bn_finish_backward_k<<<blocks_for(L.c), kThreads, 0, s>>>(part, L.c, g.splits, sums, sums + L.c);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, part, part_bytes);
    if (dx && x.numel() > 0) {
        const Launch la = elementwise(L);
        bn_backward_dx_k<<<la.blocks, la.threads, 0, s>>>(x.data(), dy.data(), yp, dx->data(), L.n * L.hw, la.e,
                                                          gamma.data(), mean.data(), invstd.data(), sums, sums + L.c,
                                                          batch_stats, act);
        FSAD_CUDA_LAUNCH_CHECK();
    }
    if (dbeta) FSAD_CUDA_CHECK(cudaMemcpyAsync(dbeta->data(), sums, L.c * sizeof(float), cudaMemcpyDeviceToDevice, s));
    if (dgamma) FSAD_CUDA_CHECK(cudaMemcpyAsync(dgamma->data(), sums + L.c, L.c * sizeof(float), cudaMemcpyDeviceToDevice, s));
    release(dev, sums, 2 * L.c * sizeof(float));
}

}  // namespace fsad::cuda
