// Patch features, anomaly maps, coreset and nearest-neighbour scoring (see patch.hpp).
#include "fsad/method/patch.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include "fsad/core/error.hpp"
#include "fsad/core/ops.hpp"
#include "fsad/core/rng.hpp"

namespace fsad::method {

Tensor patch_features(const std::vector<Tensor>& maps, int pool) {
    FSAD_CHECK(!maps.empty(), "patch_features: no stage maps");
    FSAD_CHECK(pool >= 1 && pool % 2 == 1, "patch_features: pool must be odd and positive, got ", pool);
    const Tensor& m0 = maps[0];
    FSAD_CHECK(m0.ndim() == 4, "patch_features: stage maps must be [N,C,H,W], got ", m0.shape().str());
    const int64_t n = m0.dim(0), h = m0.dim(2), w = m0.dim(3);
    std::vector<Tensor> parts;
    for (const Tensor& m : maps) {
        FSAD_CHECK(m.ndim() == 4 && m.dim(0) == n && m.device() == m0.device(),
                   "patch_features: maps must be [N,C,H,W] with the same N on one device");
        const int pad = pool / 2;
        Tensor p = pool > 1 ? ops::avgpool2d_forward(m, ops::Pool2dParams{pool, pool, 1, 1, pad, pad}) : m;
        if (p.dim(2) != h || p.dim(3) != w) p = ops::resize_bilinear(p, h, w);
        parts.push_back(p);
    }
    return ops::concat(parts, 1);
}

Tensor patch_rows(const Tensor& f) {
    FSAD_CHECK(f.ndim() == 4, "patch_rows: features must be [N,C,H,W]");
    return ops::channels_last(f).reshape(Shape{f.dim(0) * f.dim(2) * f.dim(3), f.dim(1)});
}

Tensor anomaly_map(const float* scores, int64_t h, int64_t w, int64_t H, int64_t W, double sigma) {
    FSAD_CHECK(h > 0 && w > 0 && H > 0 && W > 0, "anomaly_map: empty score grid or output");
    Tensor grid = Tensor::empty(Shape{1, h, w});
    std::copy_n(scores, h * w, grid.data());
    return anomaly_maps(grid, H, W, sigma).reshape(Shape{H, W});
}

Tensor anomaly_maps(const Tensor& grids, int64_t H, int64_t W, double sigma) {
    FSAD_CHECK(grids.defined() && grids.ndim() == 3 && H > 0 && W > 0, "anomaly_maps: expected score grids [n, h, w] and H, W >= 1");
    const Tensor up = (grids.dim(1) == H && grids.dim(2) == W) ? grids : ops::resize_bilinear(grids, H, W);
    return sigma > 0 ? ops::gaussian_blur(up, sigma) : up.clone();
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

struct PatchKnn::OnDevices {
    std::mutex mutex;
    std::map<int, std::pair<Tensor, Tensor>> by_device;  // CUDA index -> bank, norms
};

void PatchKnn::fit(const Tensor& bank) {
    FSAD_CHECK(bank.defined() && bank.ndim() == 2 && bank.dim(0) >= 1 && bank.dim(1) >= 1,
               "PatchKnn::fit: bank must be [M, C] with M, C >= 1");
    Tensor b = bank.is_cuda() ? bank.to(Device::cpu()) : bank.clone();
    const int64_t M = b.dim(0), C = b.dim(1);
    Tensor sq = Tensor::empty(Shape{M});
    for (int64_t i = 0; i < M; ++i) {
        double s = 0;
        for (int64_t k = 0; k < C; ++k) {
            const float v = b.data()[i * C + k];
            FSAD_CHECK(std::isfinite(v), "PatchKnn::fit: the bank has a non-finite value (row ", i, ")");
            s += double(v) * v;
        }
        sq.data()[i] = static_cast<float>(s);
    }
    bank_ = b;
    sqnorm_ = sq;
    on_devices_ = std::make_shared<OnDevices>();
}

Tensor PatchKnn::score(const Tensor& q) const {
    FSAD_CHECK(fitted(), "PatchKnn::score: not fitted");
    FSAD_CHECK(q.defined() && q.ndim() == 2 && q.dim(1) == bank_.dim(1), "PatchKnn::score: queries must be [P, ",
               bank_.dim(1), "], got ", q.defined() ? q.shape().str() : std::string("an undefined tensor"));
    if (!q.is_cuda()) return ops::nearest_distance(q, bank_, sqnorm_);
    std::pair<Tensor, Tensor> on;
    {
        std::lock_guard<std::mutex> lk(on_devices_->mutex);
        auto it = on_devices_->by_device.find(q.device().index);
        if (it == on_devices_->by_device.end())
            it = on_devices_->by_device.emplace(q.device().index, std::make_pair(bank_.to(q.device()), sqnorm_.to(q.device()))).first;
        on = it->second;
    }
    return ops::nearest_distance(q, on.first, on.second);
}

}  // namespace fsad::method
