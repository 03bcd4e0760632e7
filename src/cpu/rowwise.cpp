// Row-wise vector ops on [N,D] matrices.
//   l2_normalize: y = x / r, r = max(|x|, eps).
//       dx = dy/r - x (x.dy)/(|x|^2 r) when |x| > eps, else dy/eps.
//   cosine: c = a.b / max(|a||b|, eps).  With s = |a||b| > eps:
//       da = dc * (b/s - c a/|a|^2),   db = dc * (a/s - c b/|b|^2).
//   Below eps the denominator is the constant eps: da = dc*b/eps, db = dc*a/eps.
// Gradient rule: outputs written (=).
#include <cmath>

#include "kernels.hpp"

namespace fsad::cpu {
namespace {
double dot(const float* a, const float* b, int64_t d) {
    double s = 0.0;
    for (int64_t k = 0; k < d; ++k) s += static_cast<double>(a[k]) * b[k];
    return s;
}
}  // namespace

void l2_normalize_forward(const Tensor& x, float eps, const Tensor& y) {
    const int64_t n = x.dim(0), d = x.dim(1);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float* xr = x.data() + i * d;
        const double r = std::max(std::sqrt(dot(xr, xr, d)), static_cast<double>(eps));
        float* yr = y.data() + i * d;
        for (int64_t k = 0; k < d; ++k) yr[k] = static_cast<float>(xr[k] / r);
    }
}

void l2_normalize_backward(const Tensor& x, const Tensor& dy, float eps, const Tensor& dx) {
    const int64_t n = x.dim(0), d = x.dim(1);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float* xr = x.data() + i * d;
        const float* g = dy.data() + i * d;
        float* o = dx.data() + i * d;
        const double nx2 = dot(xr, xr, d), nx = std::sqrt(nx2);
        if (nx > eps) {
            const double xg = dot(xr, g, d);
            for (int64_t k = 0; k < d; ++k) o[k] = static_cast<float>(g[k] / nx - xr[k] * xg / (nx2 * nx));
        } else {
            for (int64_t k = 0; k < d; ++k) o[k] = static_cast<float>(g[k] / eps);
        }
    }
}

void cosine_similarity_forward(const Tensor& a, const Tensor& b, float eps, const Tensor& c) {
    const int64_t n = a.dim(0), d = a.dim(1);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float* ar = a.data() + i * d;
        const float* br = b.data() + i * d;
        const double s = std::max(std::sqrt(dot(ar, ar, d) * dot(br, br, d)), static_cast<double>(eps));
        c.data()[i] = static_cast<float>(dot(ar, br, d) / s);
    }
}

void cosine_similarity_backward(const Tensor& a, const Tensor& b, const Tensor& dc, float eps, const Tensor* da,
                                const Tensor* db) {
    const int64_t n = a.dim(0), d = a.dim(1);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const float* ar = a.data() + i * d;
        const float* br = b.data() + i * d;
        const double na2 = dot(ar, ar, d), nb2 = dot(br, br, d), ab = dot(ar, br, d);
        const double raw = std::sqrt(na2 * nb2);
        const double g = dc.data()[i];
        if (raw > eps) {
            const double c = ab / raw;
            if (da) {
                float* o = da->data() + i * d;
                for (int64_t k = 0; k < d; ++k) o[k] = static_cast<float>(g * (br[k] / raw - c * ar[k] / na2));
            }
            if (db) {
                float* o = db->data() + i * d;
                for (int64_t k = 0; k < d; ++k) o[k] = static_cast<float>(g * (ar[k] / raw - c * br[k] / nb2));
            }
        } else {
            if (da) {
                float* o = da->data() + i * d;
                for (int64_t k = 0; k < d; ++k) o[k] = static_cast<float>(g * br[k] / eps);
            }
            if (db) {
                float* o = db->data() + i * d;
                for (int64_t k = 0; k < d; ++k) o[k] = static_cast<float>(g * ar[k] / eps);
            }
        }
    }
}

}  // namespace fsad::cpu
