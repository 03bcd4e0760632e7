// The patch scorers' kernels on the CPU (method/patch.hpp): bilinear resizing of feature planes,
// channels-last layout, nearest-neighbour distances. Forward only (scoring needs no gradient).
//
//   resize_bilinear   y[p, Y, X] = bilinear(x[p], math::bilinear_tap(Y), math::bilinear_tap(X))
//   channels_last     y[n, s, c] = x[n, c, s]
//   nearest_distance  j* = the first argmin_j |b_j|^2 - 2 q.b_j  (|q|^2 is the same for the row),
//                     out = sqrt(sum_k (q_k - b_j*k)^2) in double
//   gaussian_blur     t[p, Y, X] = sum_j k[j] x[p, reflect(Y + j - r), X], then
//                     y[p, Y, X] = sum_j k[j] t[p, Y, reflect(X + j - r)], sums in double
//   row_max           y[r] = max_nan over the row
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fsad/detail/math.hpp"
#include "kernels.hpp"

namespace fsad::cpu {

void resize_bilinear(const Tensor& x, int64_t planes, int64_t h, int64_t w, const Tensor& y, int64_t H, int64_t W) {
    const float sy = static_cast<float>(h) / static_cast<float>(H), sx = static_cast<float>(w) / static_cast<float>(W);
    std::vector<math::BilinearTap> tx(static_cast<size_t>(W));
    for (int64_t X = 0; X < W; ++X) tx[static_cast<size_t>(X)] = math::bilinear_tap(X, w, sx);
    const float* src = x.data();
    float* dst = y.data();
#pragma omp parallel for schedule(static) collapse(2) if (planes * H * W > 65536)
    for (int64_t p = 0; p < planes; ++p)
        for (int64_t Y = 0; Y < H; ++Y) {
            const math::BilinearTap ty = math::bilinear_tap(Y, h, sy);
            const float* plane = src + p * h * w;
            float* row = dst + (p * H + Y) * W;
            for (int64_t X = 0; X < W; ++X) row[X] = math::bilinear_at(plane, w, ty, tx[static_cast<size_t>(X)]);
        }
}

void channels_last(const Tensor& x, int64_t n, int64_t c, int64_t s, const Tensor& y) {
    const float* src = x.data();
    float* dst = y.data();
#pragma omp parallel for schedule(static) if (n * c * s > 65536)
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < c; ++k) {
            const float* from = src + (i * c + k) * s;
            float* to = dst + i * s * c + k;
            for (int64_t p = 0; p < s; ++p) to[p * c] = from[p];
        }
}

void nearest_distance(const Tensor& q, const Tensor& bank, const Tensor& bank_sqnorm, const Tensor& out) {
    const int64_t P = q.dim(0), M = bank.dim(0), C = bank.dim(1);
    constexpr int64_t kChunk = 512;  // rows per product: 512 x M floats of scratch
    std::vector<float> g(static_cast<size_t>(std::min(P, kChunk) * M));
    const float* sq = bank_sqnorm.data();
    for (int64_t r0 = 0; r0 < P; r0 += kChunk) {
        const int64_t rows = std::min(kChunk, P - r0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(M), static_cast<int>(C),
                    1.0f, q.data() + r0 * C, static_cast<int>(C), bank.data(), static_cast<int>(C), 0.0f, g.data(),
                    static_cast<int>(M));
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < rows; ++i) {
            const float* gi = g.data() + i * M;
            int64_t best = 0;
            float bd = std::numeric_limits<float>::infinity();
            for (int64_t j = 0; j < M; ++j) {
                const float d = sq[j] - 2.0f * gi[j];
                if (d < bd) {
                    bd = d;
                    best = j;
                }
            }
            const float* a = q.data() + (r0 + i) * C;
            const float* b = bank.data() + best * C;
            double s = 0;
            for (int64_t k = 0; k < C; ++k) s += double(a[k] - b[k]) * double(a[k] - b[k]);
            out.data()[r0 + i] = static_cast<float>(std::sqrt(s));
        }
    }
}

namespace {
// One pass of the separable filter over every plane: along the rows (stride 1) or the columns of
// each [H, W] plane, in double as scipy's correlate1d; the border taps through math::reflect_index
void blur_pass(const float* src, float* dst, int64_t planes, int64_t H, int64_t W, bool along_w, const std::vector<double>& k) {
    const int64_t r = static_cast<int64_t>(k.size() / 2);
    const int64_t len = along_w ? W : H, lines = along_w ? H : W;
    const int64_t step = along_w ? 1 : W, lstep = along_w ? W : 1;
#pragma omp parallel for schedule(static) collapse(2) if (planes * H * W > 16384)
    for (int64_t p = 0; p < planes; ++p)
        for (int64_t l = 0; l < lines; ++l) {
            const float* s = src + p * H * W + l * lstep;
            float* d = dst + p * H * W + l * lstep;
            for (int64_t i = 0; i < len; ++i) {
                double acc = 0;
                if (i - r >= 0 && i + r < len) {
                    for (int64_t j = -r; j <= r; ++j) acc += k[static_cast<size_t>(j + r)] * s[(i + j) * step];
                } else {
                    for (int64_t j = -r; j <= r; ++j)
                        acc += k[static_cast<size_t>(j + r)] * s[math::reflect_index(i + j, len) * step];
                }
                d[i * step] = static_cast<float>(acc);
            }
        }
}
}  // namespace

void gaussian_blur(const Tensor& x, int64_t planes, int64_t H, int64_t W, const std::vector<double>& taps, const Tensor& y) {
    std::vector<float> tmp(static_cast<size_t>(planes * H * W));
    blur_pass(x.data(), tmp.data(), planes, H, W, false, taps);  // axis 0 first, as scipy
    blur_pass(tmp.data(), y.data(), planes, H, W, true, taps);
}

void row_max(const Tensor& x, int64_t R, int64_t K, const Tensor& y) {
#pragma omp parallel for schedule(static) if (R * K > 65536)
    for (int64_t r = 0; r < R; ++r) {
        const float* row = x.data() + r * K;
        float m = row[0];
        for (int64_t k = 1; k < K; ++k) m = math::max_nan(m, row[k]);
        y.data()[r] = m;
    }
}

}  // namespace fsad::cpu
