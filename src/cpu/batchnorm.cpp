// Batch normalisation on the CPU, per channel c over the m = N*H*W values x_i, optionally
// followed by a fused activation a (ReLU, ReLU6; Identity when none):
//   forward (train): mu = mean(x), var = mean((x-mu)^2), invstd = 1/sqrt(var+eps),
//                    z = gamma*(x-mu)*invstd + beta, y = a(z);
//                    running_mean = (1-momentum)*running_mean + momentum*mu,
//                    running_var  = (1-momentum)*running_var  + momentum*var*m/(m-1)
//   backward (train): g = dL/dz = a'(y) * dy, xhat = (x-mu)*invstd,
//                    dbeta = sum g, dgamma = sum g*xhat,
//                    dx = gamma*invstd * (g - dbeta/m - xhat*dgamma/m)
//   backward (eval): mu, invstd are constants: dx = gamma*invstd*g.
// Forward statistics are summed in double: one pass for sum and sum of squares around a shift
// (the channel's first value), which keeps the cancellation small. Backward sums each row in
// float (vectorised) and the rows in double.
// Gradient rule: outputs written (=).
#include <cmath>

#include "kernels.hpp"

namespace fsad::cpu {
namespace {
struct Layout {
    int64_t n, c, hw;
};
Layout layout(const Tensor& x) { return {x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1}; }

template <math::Activation A>
void normalize_rows(const float* xp, float* yp, const Layout& L, int64_t c, float scale, float shift) {
    for (int64_t n = 0; n < L.n; ++n) {
        const float* xc = xp + (n * L.c + c) * L.hw;
        float* yc = yp + (n * L.c + c) * L.hw;
#pragma omp simd
        for (int64_t i = 0; i < L.hw; ++i) yc[i] = math::activation(xc[i] * scale + shift, A);
    }
}
void normalize(const float* xp, float* yp, const Layout& L, int64_t c, float scale, float shift, math::Activation a) {
    switch (a) {
        case math::Activation::ReLU: normalize_rows<math::Activation::ReLU>(xp, yp, L, c, scale, shift); break;
        case math::Activation::ReLU6: normalize_rows<math::Activation::ReLU6>(xp, yp, L, c, scale, shift); break;
        default: normalize_rows<math::Activation::Identity>(xp, yp, L, c, scale, shift); break;
    }
}
}  // namespace

void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float momentum, float eps, const Tensor& mean,
                             const Tensor& invstd, const Tensor& y, math::Activation act) {
    const Layout L = layout(x);
    const float* xp = x.data();
    float* yp = y.data();
    const int64_t m = L.n * L.hw;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < L.c; ++c) {
        const float k = xp[c * L.hw];  // shift: any value of the channel
        double s = 0.0, ss = 0.0;
        for (int64_t n = 0; n < L.n; ++n) {
            const float* xc = xp + (n * L.c + c) * L.hw;
#pragma omp simd reduction(+ : s, ss)
            for (int64_t i = 0; i < L.hw; ++i) {
                const double d = static_cast<double>(xc[i] - k);
                s += d;
                ss += d * d;
            }
        }
        const double dm = s / static_cast<double>(m);
        const double var = std::max(0.0, ss / static_cast<double>(m) - dm * dm);
        const double mu = dm + k;
        const float is = static_cast<float>(1.0 / std::sqrt(var + eps));
        const float muf = static_cast<float>(mu);
        mean.data()[c] = muf;
        invstd.data()[c] = is;
        const float scale = gamma.data()[c] * is;
        normalize(xp, yp, L, c, scale, beta.data()[c] - muf * scale, act);
        float* rm = running_mean.data();
        float* rv = running_var.data();
        rm[c] = (1.0f - momentum) * rm[c] + momentum * muf;
        rv[c] = (1.0f - momentum) * rv[c] +
                momentum * static_cast<float>(var * static_cast<double>(m) / static_cast<double>(m - 1));
    }
}

void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                            const Tensor& running_var, float eps, const Tensor& y, math::Activation act) {
    const Layout L = layout(x);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < L.c; ++c) {
        float scale, shift;
        math::bn_eval_affine(gamma.data()[c], beta.data()[c], running_mean.data()[c], running_var.data()[c], eps, scale,
                             shift);
        normalize(x.data(), y.data(), L, c, scale, shift, act);
    }
}

void batchnorm_invstd(const Tensor& var, float eps, const Tensor& invstd) {
    const float* v = var.data();
    float* is = invstd.data();
    for (int64_t c = 0; c < var.numel(); ++c) is[c] = math::bn_invstd(v[c], eps);
}

namespace {
template <math::Activation A>
void bn_backward_channel(const float* xp, const float* dyp, const float* ypp, const Layout& L, int64_t c, float mu,
                         float is, float gamma, bool batch_stats, double m, float* dxp, float* dgamma, float* dbeta) {
    double sg = 0.0, sgx = 0.0;
    for (int64_t n = 0; n < L.n; ++n) {
        const int64_t off = (n * L.c + c) * L.hw;
        const float* xc = xp + off;
        const float* dc = dyp + off;
        const float* yc = A == math::Activation::Identity ? dc : ypp + off;
        float s1 = 0.0f, s2 = 0.0f;  // one row in float (vectorised), rows summed in double
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t i = 0; i < L.hw; ++i) {
            const float g = math::activation_grad(yc[i], dc[i], A);
            s1 += g;
            s2 += g * (xc[i] - mu);
        }
        sg += s1;
        sgx += s2;
    }
    sgx *= is;  // sum g * xhat
    if (dbeta) dbeta[c] = static_cast<float>(sg);
    if (dgamma) dgamma[c] = static_cast<float>(sgx);
    if (!dxp) return;
    const float k = gamma * is;
    const float a = batch_stats ? static_cast<float>(sg / m) : 0.0f;
    const float b = batch_stats ? static_cast<float>(sgx / m) * is : 0.0f;
    for (int64_t n = 0; n < L.n; ++n) {
        const int64_t off = (n * L.c + c) * L.hw;
        const float* xc = xp + off;
        const float* dc = dyp + off;
        const float* yc = A == math::Activation::Identity ? dc : ypp + off;
        float* o = dxp + off;
#pragma omp simd
        for (int64_t i = 0; i < L.hw; ++i) o[i] = k * (math::activation_grad(yc[i], dc[i], A) - a - (xc[i] - mu) * b);
    }
}
}  // namespace

void batchnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& invstd,
                        bool batch_stats, const Tensor& dy, const Tensor* y, math::Activation act, const Tensor* dx,
                        const Tensor* dgamma, const Tensor* dbeta) {
    const Layout L = layout(x);
    const double m = static_cast<double>(L.n * L.hw);
    const float* yp = y ? y->data() : nullptr;
    float* dxp = dx ? dx->data() : nullptr;
    float* dgp = dgamma ? dgamma->data() : nullptr;
    float* dbp = dbeta ? dbeta->data() : nullptr;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < L.c; ++c) {
        const float mu = mean.data()[c], is = invstd.data()[c], g = gamma.data()[c];
        switch (act) {
            case math::Activation::ReLU:
                bn_backward_channel<math::Activation::ReLU>(x.data(), dy.data(), yp, L, c, mu, is, g, batch_stats, m,
                                                            dxp, dgp, dbp);
                break;
            case math::Activation::ReLU6:
                bn_backward_channel<math::Activation::ReLU6>(x.data(), dy.data(), yp, L, c, mu, is, g, batch_stats, m,
                                                             dxp, dgp, dbp);
                break;
            default:
                bn_backward_channel<math::Activation::Identity>(x.data(), dy.data(), yp, L, c, mu, is, g, batch_stats,
                                                                m, dxp, dgp, dbp);
        }
    }
}

}  // namespace fsad::cpu
