// Batch normalisation on the GPU with the fused activation; the formulas are those at the top of
// src/cpu/batchnorm.cpp. Statistics: blocks sum slices of each channel around a shift (the
// channel's first value) in double, as the CPU does; a per-channel kernel combines them, updates
// the running statistics and writes scale/shift; an element-wise kernel normalises.
// Backward: the same split sums of g = a'(y) dy and g * xhat; an element-wise kernel forms dx.
#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

constexpr int kBnThreads = 512;

// Per-channel sums are split over `splits` blocks per channel (grid [splits, C]) so that the
// early layers (few channels, many values each) still fill the GPU; a second kernel combines the
// partial sums of each channel in a fixed order (deterministic).
__device__ inline void chunk_of(int64_t m, int64_t splits, int64_t s, int64_t& lo, int64_t& hi) {
    lo = m * s / splits;
    hi = m * (s + 1) / splits;
}

__global__ void bn_partial_stats_k(const float* x, int64_t n, int64_t c_count, int64_t hw, int64_t splits, double* part) {
    const int64_t c = blockIdx.y, m = n * hw;
    const float k = x[c * hw];  // shift: the channel's first value
    int64_t lo, hi;
    chunk_of(m, splits, blockIdx.x, lo, hi);
    double s = 0.0, s2 = 0.0;
    for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        const int64_t b = j / hw, i = j % hw;
        const double v = static_cast<double>(x[(b * c_count + c) * hw + i]) - k;
        s += v;
        s2 += v * v;
    }
    s = block_sum(s);
    s2 = block_sum(s2);
    if (threadIdx.x == 0) {
        part[(c * splits + blockIdx.x) * 2] = s;
        part[(c * splits + blockIdx.x) * 2 + 1] = s2;
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

// y = act(x * scale[c] + shift[c] (+ r)): r, a residual of x's shape, or null
__global__ void bn_apply_k(const float* x, const float* r, float* y, int64_t total, int64_t c_count, int64_t hw,
                           const float* scale, const float* shift, math::Activation act) {
    FSAD_GRID_LOOP(i, total) {
        const int64_t c = (i / hw) % c_count;
        const float v = x[i] * scale[c] + shift[c];
        y[i] = math::activation(r ? v + r[i] : v, act);
    }
}

__global__ void bn_backward_partial_k(const float* x, const float* dy, const float* y, int64_t n, int64_t c_count,
                                      int64_t hw, int64_t splits, const float* mean, const float* invstd,
                                      math::Activation act, double* part) {
    const int64_t c = blockIdx.y, m = n * hw;
    const float mu = mean[c], is = invstd[c];
    int64_t lo, hi;
    chunk_of(m, splits, blockIdx.x, lo, hi);
    double s = 0.0, sx = 0.0;
    for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        const int64_t b = j / hw, i = j % hw, at = (b * c_count + c) * hw + i;
        const float g = act == math::Activation::Identity ? dy[at] : math::activation_grad(y[at], dy[at], act);
        s += g;
        sx += static_cast<double>(g) * ((x[at] - mu) * is);
    }
    s = block_sum(s);
    sx = block_sum(sx);
    if (threadIdx.x == 0) {
        part[(c * splits + blockIdx.x) * 2] = s;
        part[(c * splits + blockIdx.x) * 2 + 1] = sx;
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

__global__ void bn_backward_dx_k(const float* x, const float* dy, const float* y, float* dx, int64_t total, int64_t m,
                                 int64_t c_count, int64_t hw, const float* gamma, const float* mean, const float* invstd,
                                 const float* sum_g, const float* sum_gx, bool batch_stats, math::Activation act) {
    FSAD_GRID_LOOP(i, total) {
        const int64_t c = (i / hw) % c_count;
        const float g = act == math::Activation::Identity ? dy[i] : math::activation_grad(y[i], dy[i], act);
        const float k = gamma[c] * invstd[c];
        if (batch_stats) {
            const float xhat = (x[i] - mean[c]) * invstd[c];
            const float inv_m = 1.0f / static_cast<float>(m);
            dx[i] = k * (g - sum_g[c] * inv_m - xhat * sum_gx[c] * inv_m);
        } else {
            dx[i] = k * g;
        }
    }
}

struct Layout {
    int64_t n, c, hw;
};
Layout layout(const Tensor& x) { return {x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1}; }

// blocks per channel: enough blocks in all (>= 1024) while each keeps >= 4 values per thread
int64_t splits_for(const Layout& L) {
    const int64_t m = L.n * L.hw;
    const int64_t want = (1024 + L.c - 1) / L.c;
    const int64_t most = std::max<int64_t>(1, m / (4 * kBnThreads));
    return std::clamp<int64_t>(want, 1, most);
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
    const int64_t splits = splits_for(L);
    const size_t part_bytes = static_cast<size_t>(2 * L.c * splits) * sizeof(double);
    auto* part = static_cast<double*>(alloc(dev, part_bytes));
    bn_partial_stats_k<<<dim3(static_cast<unsigned>(splits), static_cast<unsigned>(L.c)), kBnThreads, 0, s>>>(
        x.data(), L.n, L.c, L.hw, splits, part);
    FSAD_CUDA_LAUNCH_CHECK();
    bn_finish_stats_k<<<blocks_for(L.c), kThreads, 0, s>>>(x.data(), part, L.n, L.c, L.hw, splits, gamma.data(), beta.data(),
                                                           running_mean.data(), running_var.data(), momentum, eps,
                                                           mean.data(), invstd.data(), coeff, coeff + L.c);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, part, part_bytes);
    bn_apply_k<<<blocks_for(x.numel()), kThreads, 0, s>>>(x.data(), nullptr, y.data(), x.numel(), L.c, L.hw, coeff,
                                                          coeff + L.c, act);
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
    bn_apply_k<<<blocks_for(x.numel()), kThreads, 0, s>>>(x.data(), residual ? residual->data() : nullptr, y.data(),
                                                          x.numel(), L.c, L.hw, coeff, coeff + L.c, act);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, coeff, 2 * L.c * sizeof(float));
}

void batchnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& invstd, bool batch_stats,
                        const Tensor& dy, const Tensor* y, math::Activation act, const Tensor* dx, const Tensor* dgamma,
                        const Tensor* dbeta) {
    const Layout L = layout(x);
    if (L.c == 0) return;
    const int dev = x.device().index;
    cudaStream_t s = context(dev).stream;
    const float* yp = (y && act != math::Activation::Identity) ? y->data() : nullptr;
    if (act != math::Activation::Identity && !yp) throw Error("batchnorm_backward: the fused output y is needed for the activation");
    auto* sums = static_cast<float*>(alloc(dev, 2 * L.c * sizeof(float)));
    const int64_t splits = splits_for(L);
    const size_t part_bytes = static_cast<size_t>(2 * L.c * splits) * sizeof(double);
    auto* part = static_cast<double*>(alloc(dev, part_bytes));
    bn_backward_partial_k<<<dim3(static_cast<unsigned>(splits), static_cast<unsigned>(L.c)), kBnThreads, 0, s>>>(
        x.data(), dy.data(), yp, L.n, L.c, L.hw, splits, mean.data(), invstd.data(), act, part);
    FSAD_CUDA_LAUNCH_CHECK();
    bn_finish_backward_k<<<blocks_for(L.c), kThreads, 0, s>>>(part, L.c, splits, sums, sums + L.c);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, part, part_bytes);
    if (dx && x.numel() > 0) {
        bn_backward_dx_k<<<blocks_for(x.numel()), kThreads, 0, s>>>(x.data(), dy.data(), yp, dx->data(), x.numel(), L.n * L.hw,
                                                                    L.c, L.hw, gamma.data(), mean.data(), invstd.data(), sums,
                                                                    sums + L.c, batch_stats, act);
        FSAD_CUDA_LAUNCH_CHECK();
    }
    if (dbeta) FSAD_CUDA_CHECK(cudaMemcpyAsync(dbeta->data(), sums, L.c * sizeof(float), cudaMemcpyDeviceToDevice, s));
    if (dgamma) FSAD_CUDA_CHECK(cudaMemcpyAsync(dgamma->data(), sums + L.c, L.c * sizeof(float), cudaMemcpyDeviceToDevice, s));
    release(dev, sums, 2 * L.c * sizeof(float));
}

}  // namespace fsad::cuda
