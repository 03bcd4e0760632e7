// Convolution on the CPU.
//   forward:        y[n,g] = W[g] * im2col(x[n,g])                         (sgemm)
//   backward data:  dx[n,g] = col2im(W[g]^T * dy[n,g])                     (sgemm + scatter)
//   backward filt.: dW[g] = sum_n dy[n,g] * im2col(x[n,g])^T               (sgemm, beta=1 over n)
//   backward bias:  db[c] = sum_{n,h,w} dy[n,c,h,w]
// 1x1 stride-1 unpadded convolutions skip im2col (the input already is the column matrix).
// Depthwise convolutions (groups == Cin == Cout) use a direct loop: their GEMMs would be 1xK.
// Gradient rule: outputs are written (=); dW accumulates over the batch inside this file only.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "kernels.hpp"

namespace fsad::cpu {
namespace {

struct Geometry {
    int64_t n, cin, h, w, cout, kh, kw, ho, wo, groups, cin_g, cout_g, k;
    bool pointwise;  // 1x1, stride 1, no padding: col == input
    bool depthwise;
};

Geometry geometry(const Tensor& x, const Tensor& w, const Tensor& /*unused*/, const Conv2dParams& p) {
    Geometry g{};
    g.n = x.dim(0);
    g.cin = x.dim(1);
    g.h = x.dim(2);
    g.w = x.dim(3);
    g.cout = w.dim(0);
    g.kh = w.dim(2);
    g.kw = w.dim(3);
    g.ho = ops::conv_out_size(g.h, static_cast<int>(g.kh), p.stride_h, p.pad_h, p.dil_h);
    g.wo = ops::conv_out_size(g.w, static_cast<int>(g.kw), p.stride_w, p.pad_w, p.dil_w);
    g.groups = p.groups;
    g.cin_g = g.cin / g.groups;
    g.cout_g = g.cout / g.groups;
    g.k = g.cin_g * g.kh * g.kw;
    g.pointwise = g.kh == 1 && g.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
    g.depthwise = g.groups == g.cin && g.groups == g.cout && g.groups > 1;
    return g;
}

// col[(c*kh + i)*kw + j][oh*wo + ow] = x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw] (0 outside).
void im2col(const float* x, const Geometry& g, const Conv2dParams& p, float* col) {
    const int64_t rows = g.cin_g * g.kh * g.kw;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
        const float* xc = x + c * g.h * g.w;
        float* out = col + r * g.ho * g.wo;
        for (int64_t oh = 0; oh < g.ho; ++oh) {
            int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
            float* o = out + oh * g.wo;
            if (ih < 0 || ih >= g.h) {
                std::fill(o, o + g.wo, 0.0f);
                continue;
            }
            const float* xr = xc + ih * g.w;
            int64_t off = j * p.dil_w - p.pad_w;
            if (p.stride_w == 1) {
                // contiguous run: valid ow satisfy 0 <= ow + off < w
                int64_t lo = std::clamp<int64_t>(-off, 0, g.wo), hi = std::clamp<int64_t>(g.w - off, 0, g.wo);
                std::fill(o, o + lo, 0.0f);
                if (hi > lo) std::copy(xr + lo + off, xr + hi + off, o + lo);
                std::fill(o + std::max(hi, lo), o + g.wo, 0.0f);
            } else {
                for (int64_t ow = 0; ow < g.wo; ++ow) {
                    int64_t iw = ow * p.stride_w + off;
                    o[ow] = (iw >= 0 && iw < g.w) ? xr[iw] : 0.0f;
                }
            }
        }
    }
}

// Adjoint of im2col: dx[c][ih][iw] += col[...]. Parallel over channels (rows of one channel
// only touch that channel's plane, so no two threads write the same element).
void col2im(const float* col, const Geometry& g, const Conv2dParams& p, float* dx) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < g.cin_g; ++c) {
        float* xc = dx + c * g.h * g.w;
        std::fill(xc, xc + g.h * g.w, 0.0f);
        for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
                const float* in = col + ((c * g.kh + i) * g.kw + j) * g.ho * g.wo;
                for (int64_t oh = 0; oh < g.ho; ++oh) {
                    int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
                    if (ih < 0 || ih >= g.h) continue;
                    float* xr = xc + ih * g.w;
                    const float* o = in + oh * g.wo;
                    for (int64_t ow = 0; ow < g.wo; ++ow) {
                        int64_t iw = ow * p.stride_w - p.pad_w + j * p.dil_w;
                        if (iw >= 0 && iw < g.w) xr[iw] += o[ow];
                    }
                }
            }
    }
}

void depthwise_forward(const float* x, const float* w, const float* b, const Geometry& g, const Conv2dParams& p,
                       float* y) {
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < g.n * g.cin; ++nc) {
        int64_t c = nc % g.cin;
        const float* xc = x + nc * g.h * g.w;
        const float* wc = w + c * g.kh * g.kw;
        float* yc = y + nc * g.ho * g.wo;
        float bias = b ? b[c] : 0.0f;
        for (int64_t oh = 0; oh < g.ho; ++oh)
            for (int64_t ow = 0; ow < g.wo; ++ow) {
                float acc = bias;
                for (int64_t i = 0; i < g.kh; ++i) {
                    int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
                    if (ih < 0 || ih >= g.h) continue;
                    for (int64_t j = 0; j < g.kw; ++j) {
                        int64_t iw = ow * p.stride_w - p.pad_w + j * p.dil_w;
                        if (iw >= 0 && iw < g.w) acc += xc[ih * g.w + iw] * wc[i * g.kw + j];
                    }
                }
                yc[oh * g.wo + ow] = acc;
            }
    }
}

void depthwise_backward(const float* x, const float* w, const float* dy, const Geometry& g, const Conv2dParams& p,
                        float* dx, float* dw) {
    const int64_t kk = g.kh * g.kw;
    // Per-channel so that dW[c] is owned by one thread; the batch is summed inside.
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < g.cin; ++c) {
        const float* wc = w + c * kk;
        std::vector<float> dwc(static_cast<size_t>(kk), 0.0f);
        for (int64_t n = 0; n < g.n; ++n) {
            const float* xc = x + (n * g.cin + c) * g.h * g.w;
            const float* dyc = dy + (n * g.cin + c) * g.ho * g.wo;
            float* dxc = dx ? dx + (n * g.cin + c) * g.h * g.w : nullptr;
            if (dxc) std::fill(dxc, dxc + g.h * g.w, 0.0f);
            for (int64_t oh = 0; oh < g.ho; ++oh)
                for (int64_t ow = 0; ow < g.wo; ++ow) {
                    float d = dyc[oh * g.wo + ow];
                    for (int64_t i = 0; i < g.kh; ++i) {
                        int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
                        if (ih < 0 || ih >= g.h) continue;
                        for (int64_t j = 0; j < g.kw; ++j) {
                            int64_t iw = ow * p.stride_w - p.pad_w + j * p.dil_w;
                            if (iw < 0 || iw >= g.w) continue;
                            if (dxc) dxc[ih * g.w + iw] += d * wc[i * g.kw + j];
                            dwc[static_cast<size_t>(i * g.kw + j)] += d * xc[ih * g.w + iw];
                        }
                    }
                }
        }
        if (dw) std::copy(dwc.begin(), dwc.end(), dw + c * kk);
    }
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p, const Tensor& y) {
    const Geometry g = geometry(x, w, y, p);
    const float* xp = x.data();
    const float* wp = w.data();
    const float* bp = bias ? bias->data() : nullptr;
    float* yp = y.data();
    if (g.depthwise && g.cin_g == 1) {
        depthwise_forward(xp, wp, bp, g, p, yp);
        return;
    }
    const int64_t hw_out = g.ho * g.wo;
    std::vector<float> col;
    if (!g.pointwise) col.resize(static_cast<size_t>(g.k * hw_out));
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t gr = 0; gr < g.groups; ++gr) {
            const float* xg = xp + (n * g.cin + gr * g.cin_g) * g.h * g.w;
            const float* c = xg;
            if (!g.pointwise) {
                im2col(xg, g, p, col.data());
                c = col.data();
            }
            float* yg = yp + (n * g.cout + gr * g.cout_g) * hw_out;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(g.cout_g),
                        static_cast<int>(hw_out), static_cast<int>(g.k), 1.0f, wp + gr * g.cout_g * g.k,
                        static_cast<int>(g.k), c, static_cast<int>(hw_out), 0.0f, yg, static_cast<int>(hw_out));
        }
    if (bp) {
#pragma omp parallel for schedule(static)
        for (int64_t nc = 0; nc < g.n * g.cout; ++nc) {
            float b = bp[nc % g.cout];
            float* yc = yp + nc * hw_out;
            for (int64_t i = 0; i < hw_out; ++i) yc[i] += b;
        }
    }
}

void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dParams& p, const Tensor* dx,
                     const Tensor* dw, const Tensor* db) {
    const Geometry g = geometry(x, w, dy, p);
    const int64_t hw_out = g.ho * g.wo;
    const float* xp = x.data();
    const float* wp = w.data();
    const float* dyp = dy.data();
    if (db) {
        float* dbp = db->data();
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < g.cout; ++c) {
            double s = 0.0;
            for (int64_t n = 0; n < g.n; ++n) {
                const float* d = dyp + (n * g.cout + c) * hw_out;
                for (int64_t i = 0; i < hw_out; ++i) s += d[i];
            }
            dbp[c] = static_cast<float>(s);
        }
    }
    if (!dx && !dw) return;
    if (dw && g.n == 0) fill(dw->data(), dw->numel(), 0.0f);
    if (g.depthwise && g.cin_g == 1) {
        depthwise_backward(xp, wp, dyp, g, p, dx ? dx->data() : nullptr, dw ? dw->data() : nullptr);
        return;
    }
    std::vector<float> col(static_cast<size_t>(g.k * hw_out));
    float* dwp = dw ? dw->data() : nullptr;
    float* dxp = dx ? dx->data() : nullptr;
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t gr = 0; gr < g.groups; ++gr) {
            const float* dyg = dyp + (n * g.cout + gr * g.cout_g) * hw_out;
            const float* xg = xp + (n * g.cin + gr * g.cin_g) * g.h * g.w;
            const float* wg = wp + gr * g.cout_g * g.k;
            if (dwp) {
                const float* c = xg;
                if (!g.pointwise) {
                    im2col(xg, g, p, col.data());
                    c = col.data();
                }
                // dW[g] (cout_g x k) (+)= dy (cout_g x hw) * col^T (hw x k)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(g.cout_g),
                            static_cast<int>(g.k), static_cast<int>(hw_out), 1.0f, dyg, static_cast<int>(hw_out), c,
                            static_cast<int>(hw_out), n == 0 ? 0.0f : 1.0f, dwp + gr * g.cout_g * g.k,
                            static_cast<int>(g.k));
            }
            if (dxp) {
                float* dxg = dxp + (n * g.cin + gr * g.cin_g) * g.h * g.w;
                float* target = g.pointwise ? dxg : col.data();
                // col (k x hw) = W^T (k x cout_g) * dy (cout_g x hw)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(g.k), static_cast<int>(hw_out),
                            static_cast<int>(g.cout_g), 1.0f, wg, static_cast<int>(g.k), dyg, static_cast<int>(hw_out),
                            0.0f, target, static_cast<int>(hw_out));
                if (!g.pointwise) col2im(col.data(), g, p, dxg);
            }
        }
}

}  // namespace fsad::cpu
