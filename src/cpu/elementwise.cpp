// Element-wise kernels, optimiser kernels, linear layers and small reductions on the CPU.
// The per-element arithmetic of activations, Adam and EMA comes from fsad/detail/math.hpp,
// shared with the CUDA kernels. Gradient rule: outputs written (=).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "gemm.hpp"
#include "kernels.hpp"

namespace fsad::cpu {

void fill(float* p, int64_t n, float v) {
    if (v == 0.0f) {
        std::memset(p, 0, static_cast<size_t>(n) * sizeof(float));
        return;
    }
    std::fill(p, p + n, v);
}

void activation_forward(const Tensor& x, math::Activation a, const Tensor& y) {
    const float* xp = x.data();
    float* yp = y.data();
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) yp[i] = math::activation(xp[i], a);
}

void activation_backward(const Tensor& y, const Tensor& dy, math::Activation a, const Tensor& dx) {
    const float* yp = y.data();
    const float* dp = dy.data();
    float* o = dx.data();
    const int64_t n = y.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) o[i] = math::activation_grad(yp[i], dp[i], a);
}

void axpby(float alpha, const Tensor& a, float beta, const Tensor& b, const Tensor& y) {
    const float* ap = a.data();
    const float* bp = b.data();
    float* yp = y.data();
    const int64_t n = a.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) yp[i] = alpha * ap[i] + beta * bp[i];
}

void mul(const Tensor& a, const Tensor& b, const Tensor& y) {
    const float* ap = a.data();
    const float* bp = b.data();
    float* yp = y.data();
    const int64_t n = a.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) yp[i] = ap[i] * bp[i];
}

void affine(const Tensor& x, float alpha, float beta, const Tensor& y) {
    const float* xp = x.data();
    float* yp = y.data();
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) yp[i] = alpha * xp[i] + beta;
}

void round_bf16(const Tensor& x, const Tensor& y) {
    const float* xp = x.data();
    float* yp = y.data();
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) yp[i] = math::round_bf16(xp[i]);
}

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const math::AdamStep& s) {
    float* p = param.data();
    const float* g = grad.data();
    float* mp = m.data();
    float* vp = v.data();
    const int64_t n = param.numel();
#pragma omp parallel for simd schedule(static)  // separate buffers: Adam's flat parameters, gradients, moments
    for (int64_t i = 0; i < n; ++i) math::adam_update(p[i], g[i], mp[i], vp[i], s);
}

void ema_update(const Tensor& target, const Tensor& online, float beta) {
    float* t = target.data();
    const float* o = online.data();
    const int64_t n = target.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) t[i] = math::ema(t[i], o[i], beta);
}

// y [N,out] = x [N,in] * W^T [in,out] + b
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
    const int n = static_cast<int>(x.dim(0)), in = static_cast<int>(x.dim(1)), out = static_cast<int>(w.dim(0));
    if (bias) {
        const float* b = bias->data();
        for (int i = 0; i < n; ++i) std::copy(b, b + out, y.data() + static_cast<int64_t>(i) * out);
    }
    if (n == 0 || out == 0) return;
    if (in == 0) {
        if (!bias) fill(y.data(), y.numel(), 0.0f);
        return;
    }
    parallel_sgemm(false, true, n, out, in, 1.0f, x.data(), in, w.data(), in, bias ? 1.0f : 0.0f, y.data(), out);
}

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor* dx, const Tensor* dw,
                     const Tensor* db) {
    const int n = static_cast<int>(x.dim(0)), in = static_cast<int>(x.dim(1)), out = static_cast<int>(w.dim(0));
    if (dx) {
        if (out == 0 || n == 0 || in == 0) fill(dx->data(), dx->numel(), 0.0f);
        else  // dx [N,in] = dy [N,out] * W [out,in]
            parallel_sgemm(false, false, n, in, out, 1.0f, dy.data(), out, w.data(), in, 0.0f, dx->data(), in);
    }
    if (dw) {
        if (out == 0 || n == 0 || in == 0) fill(dw->data(), dw->numel(), 0.0f);
        else  // dW [out,in] = dy^T [out,N] * x [N,in]
            parallel_sgemm(true, false, out, in, n, 1.0f, dy.data(), out, x.data(), in, 0.0f, dw->data(), in);
    }
    if (db) {
        float* b = db->data();
        for (int o = 0; o < out; ++o) {
            double s = 0.0;
            for (int i = 0; i < n; ++i) s += dy.data()[static_cast<int64_t>(i) * out + o];
            b[o] = static_cast<float>(s);
        }
    }
}

void copy_strided(const Tensor& src, int64_t outer, int64_t src_inner, const Tensor& dst, int64_t dst_inner,
                  int64_t col, bool to_dst) {
    // to_dst: dst[o, col + i] = src[o, i]; otherwise src[o, i] = dst[o, col + i]
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
        float* s = src.data() + o * src_inner;
        float* d = dst.data() + o * dst_inner + col;
        if (to_dst) std::copy(s, s + src_inner, d);
        else std::copy(d, d + src_inner, s);
    }
}

void gather_rows(const Tensor& x, const std::vector<int64_t>& index, const Tensor& y) {
    const int64_t row = x.dim(0) ? x.numel() / x.dim(0) : 0;
    const int64_t m = static_cast<int64_t>(index.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
        const float* s = x.data() + index[static_cast<size_t>(i)] * row;
        std::copy(s, s + row, y.data() + i * row);
    }
}

void scatter_add_rows(const Tensor& dy, const std::vector<int64_t>& index, const Tensor& dx) {
    const int64_t row = dx.dim(0) ? dx.numel() / dx.dim(0) : 0;
    // Serial over rows: repeated indices must add, and this op is tiny (feature rows).
    for (size_t i = 0; i < index.size(); ++i) {
        const float* s = dy.data() + static_cast<int64_t>(i) * row;
        float* d = dx.data() + index[i] * row;
        for (int64_t k = 0; k < row; ++k) d[k] += s[k];
    }
}

void sum_all(const Tensor& x, const Tensor& y) {
    const float* p = x.data();
    const int64_t n = x.numel();
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < n; ++i) s += p[i];
    y.data()[0] = static_cast<float>(s);
}

void sum_dim(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& y) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t k = 0; k < inner; ++k) {
            double s = 0.0;
            for (int64_t i = 0; i < n; ++i) s += x.data()[(o * n + i) * inner + k];
            y.data()[o * inner + k] = static_cast<float>(s);
        }
}

void sum_dim_backward(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, const Tensor& dx) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < n; ++i)
            std::copy(dy.data() + o * inner, dy.data() + (o + 1) * inner, dx.data() + (o * n + i) * inner);
}

}  // namespace fsad::cpu
