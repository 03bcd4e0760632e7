// Batch normalisation on the CPU, per channel c over the m = N*H*W values x_i:
//   forward (train): mu = mean(x), var = mean((x-mu)^2), invstd = 1/sqrt(var+eps),
//                    y = gamma*(x-mu)*invstd + beta;
//                    running_mean = (1-momentum)*running_mean + momentum*mu,
//                    running_var  = (1-momentum)*running_var  + momentum*var*m/(m-1)
//   backward (train): xhat = (x-mu)*invstd,
//                    dbeta = sum dy, dgamma = sum dy*xhat,
//                    dx = gamma*invstd/m * (m*dy - dbeta - xhat*dgamma)
//   backward (eval): mu, invstd are constants: dx = gamma*invstd*dy.
// Gradient rule: outputs written (=).
#include <cmath>

#include "kernels.hpp"

namespace fsad::cpu {
namespace {
struct Layout {
    int64_t n, c, hw;
};
Layout layout(const Tensor& x) {
    return {x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1};
}
}  // namespace

void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float momentum, float eps, const Tensor& mean,
                             const Tensor& invstd, const Tensor& y) {
    const Layout L = layout(x);
    const float* xp = x.data();
    float* yp = y.data();
    const int64_t m = L.n * L.hw;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < L.c; ++c) {
        double s = 0.0;
        for (int64_t n = 0; n < L.n; ++n) {
            const float* xc = xp + (n * L.c + c) * L.hw;
            for (int64_t i = 0; i < L.hw; ++i) s += xc[i];
        }
        const double mu = s / static_cast<double>(m);
        double ss = 0.0;
        for (int64_t n = 0; n < L.n; ++n) {
            const float* xc = xp + (n * L.c + c) * L.hw;
            for (int64_t i = 0; i < L.hw; ++i) {
                double d = xc[i] - mu;
                ss += d * d;
            }
        }
        const double var = ss / static_cast<double>(m);
        const float is = static_cast<float>(1.0 / std::sqrt(var + eps));
        const float muf = static_cast<float>(mu);
        mean.data()[c] = muf;
        invstd.data()[c] = is;
        const float scale = gamma.data()[c] * is;
        const float shift = beta.data()[c] - muf * scale;
        for (int64_t n = 0; n < L.n; ++n) {
            const float* xc = xp + (n * L.c + c) * L.hw;
            float* yc = yp + (n * L.c + c) * L.hw;
            for (int64_t i = 0; i < L.hw; ++i) yc[i] = xc[i] * scale + shift;
        }
        float* rm = running_mean.data();
        float* rv = running_var.data();
        rm[c] = (1.0f - momentum) * rm[c] + momentum * muf;
        rv[c] = (1.0f - momentum) * rv[c] +
                momentum * static_cast<float>(var * static_cast<double>(m) / static_cast<double>(m - 1));
    }
}

void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                            const Tensor& running_var, float eps, const Tensor& y) {
    const Layout L = layout(x);
    const float* xp = x.data();
    float* yp = y.data();
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < L.n * L.c; ++nc) {
        const int64_t c = nc % L.c;
        const float is = 1.0f / std::sqrt(running_var.data()[c] + eps);
        const float scale = gamma.data()[c] * is;
        const float shift = beta.data()[c] - running_mean.data()[c] * scale;
        const float* xc = xp + nc * L.hw;
        float* yc = yp + nc * L.hw;
        for (int64_t i = 0; i < L.hw; ++i) yc[i] = xc[i] * scale + shift;
    }
}

void batchnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& invstd,
                        bool batch_stats, const Tensor& dy, const Tensor* dx, const Tensor* dgamma,
                        const Tensor* dbeta) {
    const Layout L = layout(x);
    const float* xp = x.data();
    const float* dyp = dy.data();
    const double m = static_cast<double>(L.n * L.hw);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < L.c; ++c) {
        const float mu = mean.data()[c], is = invstd.data()[c];
        double sdy = 0.0, sdyx = 0.0;
        for (int64_t n = 0; n < L.n; ++n) {
            const float* xc = xp + (n * L.c + c) * L.hw;
            const float* dc = dyp + (n * L.c + c) * L.hw;
            for (int64_t i = 0; i < L.hw; ++i) {
                sdy += dc[i];
                sdyx += static_cast<double>(dc[i]) * ((xc[i] - mu) * is);
            }
        }
        if (dbeta) dbeta->data()[c] = static_cast<float>(sdy);
        if (dgamma) dgamma->data()[c] = static_cast<float>(sdyx);
        if (!dx) continue;
        const float g = gamma.data()[c];
        for (int64_t n = 0; n < L.n; ++n) {
            const float* xc = xp + (n * L.c + c) * L.hw;
            const float* dc = dyp + (n * L.c + c) * L.hw;
            float* o = dx->data() + (n * L.c + c) * L.hw;
            if (batch_stats) {
                const float k = g * is;
                const float a = static_cast<float>(sdy / m), b = static_cast<float>(sdyx / m);
                for (int64_t i = 0; i < L.hw; ++i) o[i] = k * (dc[i] - a - (xc[i] - mu) * is * b);
            } else {
                const float k = g * is;
                for (int64_t i = 0; i < L.hw; ++i) o[i] = k * dc[i];
            }
        }
    }
}

}  // namespace fsad::cpu
