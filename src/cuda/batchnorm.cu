// Batch normalisation on the GPU with the fused activation; the formulas are those at the top of
// src/cpu/batchnorm.cpp. Statistics: one block per channel sums around a shift (the channel's
// first value) in double, as the CPU does; the block also updates the running statistics and
// writes per-channel scale/shift, and a second, element-wise kernel normalises.
// Backward: one block per channel sums g = a'(y) dy and g * xhat in double; an element-wise
// kernel forms dx.
#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

constexpr int kBnThreads = 512;

__global__ void bn_stats_k(const float* x, int64_t n, int64_t c_count, int64_t hw, const float* gamma, const float* beta,
                           float* running_mean, float* running_var, float momentum, float eps, float* mean_out,
                           float* invstd_out, float* scale, float* shift) {
    const int64_t c = blockIdx.x, m = n * hw;
    const float k = x[c * hw];  // shift
    double s = 0.0, s2 = 0.0;
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
        const int64_t b = j / hw, i = j % hw;
        const double v = static_cast<double>(x[(b * c_count + c) * hw + i]) - k;
        s += v;
        s2 += v * v;
    }
    s = block_sum(s);
    s2 = block_sum(s2);
    if (threadIdx.x == 0) {
        const double md = static_cast<double>(m);
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
    FSAD_GRID_LOOP(c, c_count) {
        const float is = 1.0f / sqrtf(rv[c] + eps);
        scale[c] = gamma[c] * is;
        shift[c] = beta[c] - rm[c] * gamma[c] * is;
    }
}

__global__ void bn_apply_k(const float* x, float* y, int64_t total, int64_t c_count, int64_t hw, const float* scale,
                           const float* shift, math::Activation act) {
    FSAD_GRID_LOOP(i, total) {
        const int64_t c = (i / hw) % c_count;
        y[i] = math::activation(x[i] * scale[c] + shift[c], act);
    }
}

__global__ void bn_backward_sums_k(const float* x, const float* dy, const float* y, int64_t n, int64_t c_count, int64_t hw,
                                   const float* mean, const float* invstd, math::Activation act, float* sum_g,
                                   float* sum_gx) {
    const int64_t c = blockIdx.x, m = n * hw;
    const float mu = mean[c], is = invstd[c];
    double s = 0.0, sx = 0.0;
    for (int64_t j = threadIdx.x; j < m; j += blockDim.x) {
        const int64_t b = j / hw, i = j % hw, at = (b * c_count + c) * hw + i;
        const float g = act == math::Activation::Identity ? dy[at] : math::activation_grad(y[at], dy[at], act);
        s += g;
        sx += static_cast<double>(g) * ((x[at] - mu) * is);
    }
    s = block_sum(s);
    sx = block_sum(sx);
    if (threadIdx.x == 0) {
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

}  // namespace

void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float momentum, float eps, const Tensor& mean, const Tensor& invstd,
                             const Tensor& y, math::Activation act) {
    const Layout L = layout(x);
    if (L.n * L.hw == 0 || L.c == 0) return;
    const int dev = x.device().index;
    cudaStream_t s = context(dev).stream;
    auto* coeff = static_cast<float*>(alloc(dev, 2 * L.c * sizeof(float)));
    bn_stats_k<<<static_cast<unsigned>(L.c), kBnThreads, 0, s>>>(x.data(), L.n, L.c, L.hw, gamma.data(), beta.data(),
                                                                  running_mean.data(), running_var.data(), momentum, eps,
                                                                  mean.data(), invstd.data(), coeff, coeff + L.c);
    FSAD_CUDA_LAUNCH_CHECK();
    bn_apply_k<<<blocks_for(x.numel()), kThreads, 0, s>>>(x.data(), y.data(), x.numel(), L.c, L.hw, coeff, coeff + L.c, act);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, coeff, 2 * L.c * sizeof(float));
}

void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                            const Tensor& running_var, float eps, const Tensor& y, math::Activation act) {
    const Layout L = layout(x);
    if (x.numel() == 0) return;
    const int dev = x.device().index;
    cudaStream_t s = context(dev).stream;
    auto* coeff = static_cast<float*>(alloc(dev, 2 * L.c * sizeof(float)));
    bn_eval_coeffs_k<<<blocks_for(L.c), kThreads, 0, s>>>(gamma.data(), beta.data(), running_mean.data(), running_var.data(),
                                                          eps, L.c, coeff, coeff + L.c);
    FSAD_CUDA_LAUNCH_CHECK();
    bn_apply_k<<<blocks_for(x.numel()), kThreads, 0, s>>>(x.data(), y.data(), x.numel(), L.c, L.hw, coeff, coeff + L.c, act);
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
    bn_backward_sums_k<<<static_cast<unsigned>(L.c), kBnThreads, 0, s>>>(x.data(), dy.data(), yp, L.n, L.c, L.hw, mean.data(),
                                                                          invstd.data(), act, sums, sums + L.c);
    FSAD_CUDA_LAUNCH_CHECK();
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
