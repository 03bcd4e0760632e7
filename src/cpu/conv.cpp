// Convolution on the CPU.
//   forward:        y[n,g] = W[g] * im2col(x[n,g])                         (sgemm)
//   backward data:  dx[n,g] = col2im(W[g]^T * dy[n,g])                     (sgemm + scatter)
//   backward filt.: dW[g] = sum_n dy[n,g] * im2col(x[n,g])^T               (sgemm, beta=1 over n)
//   backward bias:  db[c] = sum_{n,h,w} dy[n,c,h,w]
// 1x1 stride-1 unpadded convolutions skip im2col (the input already is the column matrix).
// Depthwise convolutions (groups == Cin == Cout) use a direct loop: their GEMMs would be 1xK.
// Gradient rule: outputs are written (=); dW accumulates over the batch inside this file only.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "gemm.hpp"
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

// col[(c*kh + i)*kw + j][q - q0] = x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw] (0 outside),
// for output positions q = oh*wo + ow in [q0, q1). Runs on the calling thread.
void im2col(const float* x, const Geometry& g, const Conv2dParams& p, float* col, int64_t q0, int64_t q1) {
    const int64_t rows = g.cin_g * g.kh * g.kw, ld = q1 - q0;
    if (ld <= 0) return;
    const int64_t oh_first = q0 / g.wo, oh_last = (q1 - 1) / g.wo;
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
        const float* xc = x + c * g.h * g.w;
        float* o = col + r * ld;
        const int64_t off = j * p.dil_w - p.pad_w;
        for (int64_t oh = oh_first; oh <= oh_last; ++oh) {
            const int64_t a = oh == oh_first ? q0 % g.wo : 0, b = oh == oh_last ? (q1 - 1) % g.wo + 1 : g.wo;
            const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
            if (ih < 0 || ih >= g.h) {
                std::fill(o, o + (b - a), 0.0f);
            } else {
                const float* xr = xc + ih * g.w;
                if (p.stride_w == 1) {
                    // valid ow satisfy 0 <= ow + off < w
                    const int64_t lo = std::clamp<int64_t>(-off, a, b), hi = std::clamp<int64_t>(g.w - off, a, b);
                    std::fill(o, o + (lo - a), 0.0f);
                    if (hi > lo) std::copy(xr + lo + off, xr + hi + off, o + (lo - a));
                    std::fill(o + (std::max(hi, lo) - a), o + (b - a), 0.0f);
                } else {
                    for (int64_t ow = a; ow < b; ++ow) {
                        const int64_t iw = ow * p.stride_w + off;
                        o[ow - a] = (iw >= 0 && iw < g.w) ? xr[iw] : 0.0f;
                    }
                }
            }
            o += b - a;
        }
    }
}

// Adjoint of im2col (full range): dx[c][ih][iw] = sum of the col entries that read it.
// Channels are independent, so `parallel` splits them across threads.
void col2im(const float* col, const Geometry& g, const Conv2dParams& p, float* dx, bool parallel) {
#pragma omp parallel for schedule(static) if (parallel)
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

// Threading: with at least as many images as threads, each thread takes whole images (its own
// im2col buffer, single-threaded GEMMs: no synchronisation, cache-friendly). With fewer images
// (inference on one image) the output positions of each image are split across threads.
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
    const int nt = omp_get_max_threads();
    auto image_group = [&](int64_t n, int64_t gr, int64_t q0, int64_t q1, float* col) {
        const float* xg = xp + (n * g.cin + gr * g.cin_g) * g.h * g.w;
        const float* c = xg + q0;
        int64_t ldc = hw_out;
        if (!g.pointwise) {
            im2col(xg, g, p, col, q0, q1);
            c = col;
            ldc = q1 - q0;
        }
        float* yg = yp + (n * g.cout + gr * g.cout_g) * hw_out + q0;
        sgemm(false, false, g.cout_g, q1 - q0, g.k, 1.0f, wp + gr * g.cout_g * g.k, g.k, c, ldc, 0.0f, yg, hw_out);
        if (bp)
            for (int64_t o = 0; o < g.cout_g; ++o) {
                const float b = bp[gr * g.cout_g + o];
                float* yr = yg + o * hw_out;
                for (int64_t q = 0; q < q1 - q0; ++q) yr[q] += b;
            }
    };
    if (g.n >= nt) {
#pragma omp parallel
        {
            Tensor col = g.pointwise ? Tensor() : Tensor::empty(Shape{g.k * hw_out});
#pragma omp for schedule(static)
            for (int64_t n = 0; n < g.n; ++n)
                for (int64_t gr = 0; gr < g.groups; ++gr) image_group(n, gr, 0, hw_out, col.data());
        }
    } else {
#pragma omp parallel
        {
            const int t = omp_get_thread_num(), T = omp_get_num_threads();
            const int64_t chunk = ((hw_out + T - 1) / T + 15) / 16 * 16;
            const int64_t q0 = std::min<int64_t>(hw_out, t * chunk), q1 = std::min<int64_t>(hw_out, q0 + chunk);
            Tensor col = g.pointwise || q1 <= q0 ? Tensor() : Tensor::empty(Shape{g.k * (q1 - q0)});
            if (q1 > q0)
                for (int64_t n = 0; n < g.n; ++n)
                    for (int64_t gr = 0; gr < g.groups; ++gr) image_group(n, gr, q0, q1, col.data());
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
    float* dwp = dw ? dw->data() : nullptr;
    float* dxp = dx ? dx->data() : nullptr;
    const int nt = omp_get_max_threads();
    const int64_t wsize = g.cout * g.k;  // = w.numel()
    // One pass over the images; each thread sums its images' filter gradients privately, then
    // the partial sums are added (fixed order: results do not depend on scheduling).
    std::vector<Tensor> partial(static_cast<size_t>(nt));
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        Tensor col = g.pointwise ? Tensor() : Tensor::empty(Shape{g.k * hw_out});
        Tensor dcol = (!dxp || g.pointwise) ? Tensor() : Tensor::empty(Shape{g.k * hw_out});
        float* acc = nullptr;
        if (dwp) {
            partial[static_cast<size_t>(t)] = Tensor::zeros(Shape{wsize});
            acc = partial[static_cast<size_t>(t)].data();
        }
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.n; ++n)
            for (int64_t gr = 0; gr < g.groups; ++gr) {
                const float* dyg = dyp + (n * g.cout + gr * g.cout_g) * hw_out;
                const float* xg = xp + (n * g.cin + gr * g.cin_g) * g.h * g.w;
                const float* wg = wp + gr * g.cout_g * g.k;
                if (acc) {
                    const float* c = xg;
                    if (!g.pointwise) {
                        im2col(xg, g, p, col.data(), 0, hw_out);
                        c = col.data();
                    }
                    // dW[g] (cout_g x k) += dy (cout_g x hw) * col^T (hw x k)
                    sgemm(false, true, g.cout_g, g.k, hw_out, 1.0f, dyg, hw_out, c, hw_out, 1.0f,
                          acc + gr * g.cout_g * g.k, g.k);
                }
                if (dxp) {
                    float* dxg = dxp + (n * g.cin + gr * g.cin_g) * g.h * g.w;
                    float* target = g.pointwise ? dxg : dcol.data();
                    // col (k x hw) = W^T (k x cout_g) * dy (cout_g x hw)
                    sgemm(true, false, g.k, hw_out, g.cout_g, 1.0f, wg, g.k, dyg, hw_out, 0.0f, target, hw_out);
                    if (!g.pointwise) col2im(dcol.data(), g, p, dxg, false);
                }
            }
    }
    if (dwp) {
        std::vector<const float*> parts;
        for (const Tensor& t : partial)
            if (t.defined()) parts.push_back(t.data());
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < wsize; ++i) {
            float s = 0.0f;
            for (const float* q : parts) s += q[i];
            dwp[i] = s;
        }
    }
}

}  // namespace fsad::cpu
