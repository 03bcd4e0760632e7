// Pooling on the CPU. Max pooling's backward recomputes the arg-max from x (first maximum
// wins, as cuDNN and PyTorch do), so the forward keeps no index tensor.
// Gradient rule: outputs written (=).
#include <algorithm>
#include <limits>
#include <vector>

#include "kernels.hpp"

namespace fsad::cpu {

namespace {
// Input rows/columns covered by output index o: [lo, hi), clipped to the image.
inline void window(int64_t o, int stride, int pad, int k, int64_t size, int64_t& lo, int64_t& hi) {
    lo = std::max<int64_t>(0, o * stride - pad);
    hi = std::min<int64_t>(size, o * stride - pad + k);
}
}  // namespace

// Per output row: the maximum over the window's rows for every input column first (contiguous,
// vectorised), then the maximum over each window's columns of that one row.
void maxpool2d_forward(const Tensor& x, const Pool2dParams& p, const Tensor& y) {
    const int64_t nc = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3), ho = y.dim(2), wo = y.dim(3);
#pragma omp parallel
    {
        std::vector<float> rowmax(static_cast<size_t>(w));
        float* m = rowmax.data();
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nc; ++k) {
            const float* xc = x.data() + k * h * w;
            float* yc = y.data() + k * ho * wo;
            for (int64_t oh = 0; oh < ho; ++oh) {
                int64_t h0, h1;
                window(oh, p.stride_h, p.pad_h, p.kh, h, h0, h1);
                std::fill(m, m + w, -std::numeric_limits<float>::infinity());
                for (int64_t ih = h0; ih < h1; ++ih) {
                    const float* xr = xc + ih * w;
                    for (int64_t iw = 0; iw < w; ++iw) m[iw] = std::max(m[iw], xr[iw]);
                }
                for (int64_t ow = 0; ow < wo; ++ow) {
                    int64_t w0, w1;
                    window(ow, p.stride_w, p.pad_w, p.kw, w, w0, w1);
                    float best = -std::numeric_limits<float>::infinity();
                    for (int64_t iw = w0; iw < w1; ++iw) best = std::max(best, m[iw]);
                    yc[oh * wo + ow] = best;
                }
            }
        }
    }
}

void maxpool2d_backward(const Tensor& x, const Tensor& dy, const Pool2dParams& p, const Tensor& dx) {
    const int64_t nc = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3), ho = dy.dim(2), wo = dy.dim(3);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nc; ++k) {
        const float* xc = x.data() + k * h * w;
        const float* dc = dy.data() + k * ho * wo;
        float* o = dx.data() + k * h * w;
        std::fill(o, o + h * w, 0.0f);
        for (int64_t oh = 0; oh < ho; ++oh) {
            int64_t h0, h1;
            window(oh, p.stride_h, p.pad_h, p.kh, h, h0, h1);
            for (int64_t ow = 0; ow < wo; ++ow) {
                int64_t w0, w1;
                window(ow, p.stride_w, p.pad_w, p.kw, w, w0, w1);
                int64_t arg = h0 * w + w0;
                float best = xc[arg];
                for (int64_t ih = h0; ih < h1; ++ih)
                    for (int64_t iw = w0; iw < w1; ++iw)
                        if (xc[ih * w + iw] > best) {  // strict: the first maximum wins
                            best = xc[ih * w + iw];
                            arg = ih * w + iw;
                        }
                o[arg] += dc[oh * wo + ow];
            }
        }
    }
}

void avgpool2d_forward(const Tensor& x, const Pool2dParams& p, const Tensor& y) {
    const int64_t nc = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3), ho = y.dim(2), wo = y.dim(3);
    const float inv = 1.0f / static_cast<float>(p.kh * p.kw);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nc; ++k) {
        const float* xc = x.data() + k * h * w;
        float* yc = y.data() + k * ho * wo;
        for (int64_t oh = 0; oh < ho; ++oh)
            for (int64_t ow = 0; ow < wo; ++ow) {
                float s = 0.0f;
                for (int64_t i = 0; i < p.kh; ++i) {
                    int64_t ih = oh * p.stride_h - p.pad_h + i;
                    if (ih < 0 || ih >= h) continue;
                    for (int64_t j = 0; j < p.kw; ++j) {
                        int64_t iw = ow * p.stride_w - p.pad_w + j;
                        if (iw >= 0 && iw < w) s += xc[ih * w + iw];
                    }
                }
                yc[oh * wo + ow] = s * inv;
            }
    }
}

void avgpool2d_backward(const Tensor& dy, const Pool2dParams& p, const Tensor& dx) {
    const int64_t nc = dx.dim(0) * dx.dim(1), h = dx.dim(2), w = dx.dim(3), ho = dy.dim(2), wo = dy.dim(3);
    const float inv = 1.0f / static_cast<float>(p.kh * p.kw);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nc; ++k) {
        const float* dc = dy.data() + k * ho * wo;
        float* o = dx.data() + k * h * w;
        std::fill(o, o + h * w, 0.0f);
        for (int64_t oh = 0; oh < ho; ++oh)
            for (int64_t ow = 0; ow < wo; ++ow) {
                float d = dc[oh * wo + ow] * inv;
                for (int64_t i = 0; i < p.kh; ++i) {
                    int64_t ih = oh * p.stride_h - p.pad_h + i;
                    if (ih < 0 || ih >= h) continue;
                    for (int64_t j = 0; j < p.kw; ++j) {
                        int64_t iw = ow * p.stride_w - p.pad_w + j;
                        if (iw >= 0 && iw < w) o[ih * w + iw] += d;
                    }
                }
            }
    }
}

void global_avgpool_forward(const Tensor& x, const Tensor& y) {
    const int64_t nc = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nc; ++k) {
        const float* xc = x.data() + k * hw;
        float s = 0.0f;
        for (int64_t i = 0; i < hw; ++i) s += xc[i];
        y.data()[k] = s / static_cast<float>(hw);
    }
}

void global_avgpool_backward(const Tensor& dy, const Tensor& dx) {
    const int64_t nc = dx.dim(0) * dx.dim(1), hw = dx.dim(2) * dx.dim(3);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nc; ++k) {
        const float d = dy.data()[k] / static_cast<float>(hw);
        float* o = dx.data() + k * hw;
        for (int64_t i = 0; i < hw; ++i) o[i] = d;
    }
}

}  // namespace fsad::cpu
