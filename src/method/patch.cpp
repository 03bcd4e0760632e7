// Patch features, anomaly maps, coreset and nearest-neighbour scoring (see patch.hpp).
#include "fsad/method/patch.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "fsad/core/error.hpp"
#include "fsad/core/ops.hpp"
#include "fsad/core/rng.hpp"
#include "fsad/io/image.hpp"

namespace fsad::method {

Tensor patch_features(const std::vector<Tensor>& maps, int pool) {
    FSAD_CHECK(!maps.empty(), "patch_features: no stage maps");
    FSAD_CHECK(pool >= 1 && pool % 2 == 1, "patch_features: pool must be odd and positive, got ", pool);
    const Tensor& m0 = maps[0];
    FSAD_CHECK(m0.ndim() == 4, "patch_features: stage maps must be [N,C,H,W], got ", m0.shape().str());
    const int64_t n = m0.dim(0), h = m0.dim(2), w = m0.dim(3);
    int64_t c_total = 0;
    for (const Tensor& m : maps) {
        FSAD_CHECK(m.ndim() == 4 && m.dim(0) == n && !m.is_cuda(), "patch_features: maps must be CPU [N,C,H,W] with the same N");
        c_total += m.dim(1);
    }
    Tensor out = Tensor::empty(Shape{n, c_total, h, w});
    const int pad = pool / 2;
    int64_t c0 = 0;
    for (const Tensor& m : maps) {
        const Tensor p = pool > 1 ? ops::avgpool2d_forward(m, ops::Pool2dParams{pool, pool, 1, 1, pad, pad}) : m;
        const int64_t c = p.dim(1), ph = p.dim(2), pw = p.dim(3);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) {
            const Tensor one = p[i];
            const Tensor r = (ph == h && pw == w) ? one : io::resize_bilinear(one, h, w);
            std::copy_n(r.data(), c * h * w, out.data() + (i * c_total + c0) * h * w);
        }
        c0 += c;
    }
    return out;
}

Tensor patch_rows(const Tensor& f) {
    FSAD_CHECK(f.ndim() == 4 && !f.is_cuda(), "patch_rows: features must be CPU [N,C,H,W]");
    const int64_t n = f.dim(0), c = f.dim(1), hw = f.dim(2) * f.dim(3);
    Tensor out = Tensor::empty(Shape{n * hw, c});
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < c; ++k) {
            const float* src = f.data() + (i * c + k) * hw;
            float* dst = out.data() + i * hw * c + k;
            for (int64_t p = 0; p < hw; ++p) dst[p * c] = src[p];
        }
    return out;
}

namespace {
// scipy.ndimage's 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a)
int64_t reflect(int64_t i, int64_t n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
}

// 1-D Gaussian along rows (stride 1) or columns of a [H, W] plane, in double like scipy's
// correlate1d (which accumulates in double for float input... close enough: float output)
void blur_1d(const float* src, float* dst, int64_t H, int64_t W, bool along_w, const std::vector<double>& k) {
    const int64_t r = static_cast<int64_t>(k.size() / 2);
    const int64_t len = along_w ? W : H, lines = along_w ? H : W;
    const int64_t step = along_w ? 1 : W, lstep = along_w ? W : 1;
#pragma omp parallel for schedule(static)
    for (int64_t l = 0; l < lines; ++l) {
        const float* s = src + l * lstep;
        float* d = dst + l * lstep;
        for (int64_t i = 0; i < len; ++i) {
            double acc = 0;
            if (i - r >= 0 && i + r < len) {
                for (int64_t j = -r; j <= r; ++j) acc += k[static_cast<size_t>(j + r)] * s[(i + j) * step];
            } else {
                for (int64_t j = -r; j <= r; ++j) acc += k[static_cast<size_t>(j + r)] * s[reflect(i + j, len) * step];
            }
            d[i * step] = static_cast<float>(acc);
        }
    }
}
}  // namespace

Tensor anomaly_map(const float* scores, int64_t h, int64_t w, int64_t H, int64_t W, double sigma) {
    FSAD_CHECK(h > 0 && w > 0 && H > 0 && W > 0, "anomaly_map: empty score grid or output");
    Tensor grid = Tensor::empty(Shape{1, h, w});
    std::copy_n(scores, h * w, grid.data());
    Tensor up = (h == H && w == W) ? grid : io::resize_bilinear(grid, H, W);
    Tensor out = Tensor::empty(Shape{H, W});
    if (sigma <= 0) {
        std::copy_n(up.data(), H * W, out.data());
        return out;
    }
    const int64_t r = static_cast<int64_t>(4.0 * sigma + 0.5);
    std::vector<double> k(static_cast<size_t>(2 * r + 1));
    double sum = 0;
    for (int64_t j = -r; j <= r; ++j) sum += k[static_cast<size_t>(j + r)] = std::exp(-0.5 * double(j * j) / (sigma * sigma));
    for (double& v : k) v /= sum;
    std::vector<float> tmp(static_cast<size_t>(H * W));
    blur_1d(up.data(), tmp.data(), H, W, false, k);  // scipy filters axis 0 first, then axis 1
    blur_1d(tmp.data(), out.data(), H, W, true, k);
    return out;
}

std::vector<int64_t> greedy_coreset(const Tensor& x, int64_t m, uint64_t seed) {
    FSAD_CHECK(x.ndim() == 2 && x.dim(0) >= 1 && !x.is_cuda(), "greedy_coreset: x must be CPU [M, C] with M >= 1");
    const int64_t M = x.dim(0), C = x.dim(1);
    std::vector<int64_t> out;
    if (m >= M) {
        for (int64_t i = 0; i < M; ++i) out.push_back(i);
        return out;
    }
    FSAD_CHECK(m >= 1, "greedy_coreset: need at least one row, got ", m);
    std::vector<float> mind(static_cast<size_t>(M), std::numeric_limits<float>::infinity());
    Rng rng(seed);
    int64_t cur = rng.integer(0, M - 1);
    const float* X = x.data();
    for (int64_t it = 0; it < m; ++it) {
        out.push_back(cur);
        const float* c = X + cur * C;
        int64_t best = 0;
        float best_d = -1.0f;
#pragma omp parallel
        {
            int64_t lb = 0;
            float ld = -1.0f;
#pragma omp for schedule(static) nowait
            for (int64_t i = 0; i < M; ++i) {
                const float* r = X + i * C;
                float d = 0;
#pragma omp simd reduction(+ : d)
                for (int64_t k = 0; k < C; ++k) d += (r[k] - c[k]) * (r[k] - c[k]);
                float& md = mind[static_cast<size_t>(i)];
                if (d < md) md = d;
                if (md > ld || (md == ld && i < lb)) {
                    ld = md;
                    lb = i;
                }
            }
#pragma omp critical
            if (ld > best_d || (ld == best_d && lb < best)) {
                best_d = ld;
                best = lb;
            }
        }
        cur = best;
    }
    return out;
}

void PatchKnn::fit(const Tensor& bank) {
    FSAD_CHECK(bank.defined() && bank.ndim() == 2 && bank.dim(0) >= 1 && bank.dim(1) >= 1,
               "PatchKnn::fit: bank must be [M, C] with M, C >= 1");
    Tensor b = bank.is_cuda() ? bank.to(Device::cpu()) : bank.clone();
    const int64_t M = b.dim(0), C = b.dim(1);
    std::vector<float> sq(static_cast<size_t>(M));
    for (int64_t i = 0; i < M; ++i) {
        double s = 0;
        for (int64_t k = 0; k < C; ++k) {
            const float v = b.data()[i * C + k];
            FSAD_CHECK(std::isfinite(v), "PatchKnn::fit: the bank has a non-finite value (row ", i, ")");
            s += double(v) * v;
        }
        sq[static_cast<size_t>(i)] = static_cast<float>(s);
    }
    bank_ = b;
    sqnorm_ = std::move(sq);
}

Tensor PatchKnn::score(const Tensor& q_in) const {
    FSAD_CHECK(fitted(), "PatchKnn::score: not fitted");
    const Tensor q = q_in.is_cuda() ? q_in.to(Device::cpu()) : q_in;
    FSAD_CHECK(q.ndim() == 2 && q.dim(1) == bank_.dim(1), "PatchKnn::score: queries must be [P, ", bank_.dim(1), "], got ",
               q.shape().str());
    const int64_t P = q.dim(0), M = bank_.dim(0), C = bank_.dim(1);
    Tensor out = Tensor::empty(Shape{P});
    constexpr int64_t kChunk = 512;  // rows per product: 512 x M floats of scratch
    std::vector<float> g(static_cast<size_t>(std::min(P, kChunk) * M));
    for (int64_t r0 = 0; r0 < P; r0 += kChunk) {
        const int64_t rows = std::min(kChunk, P - r0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(M), static_cast<int>(C),
                    1.0f, q.data() + r0 * C, static_cast<int>(C), bank_.data(), static_cast<int>(C), 0.0f, g.data(),
                    static_cast<int>(M));
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < rows; ++i) {
            const float* gi = g.data() + i * M;
            int64_t best = 0;
            float bd = std::numeric_limits<float>::infinity();
            for (int64_t j = 0; j < M; ++j) {
                const float d = sqnorm_[static_cast<size_t>(j)] - 2.0f * gi[j];  // |q|^2 is the same for the whole row
                if (d < bd) {
                    bd = d;
                    best = j;
                }
            }
            // the nearest one's distance recomputed directly, free of the expansion's rounding
            const float* a = q.data() + (r0 + i) * C;
            const float* b = bank_.data() + best * C;
            double s = 0;
            for (int64_t k = 0; k < C; ++k) s += double(a[k] - b[k]) * double(a[k] - b[k]);
            out.data()[r0 + i] = static_cast<float>(std::sqrt(s));
        }
    }
    return out;
}

}  // namespace fsad::method
