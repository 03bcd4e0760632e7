// Convolution on the CPU, as GEMMs over a chunk of B images (columns = B * Ho*Wo positions):
//   forward:        Y[g] = W[g] * im2col(x[chunk,g])                       (sgemm)
//   backward data:  dx[chunk,g] = col2im(W[g]^T * dY[g])                   (sgemm + scatter)
//   backward filt.: dW[g] = sum over chunks of dY[g] * im2col(x[chunk,g])^T (sgemm, beta=1)
//   backward bias:  db[c] = sum_{n,h,w} dy[n,c,h,w]
// Chunks hold enough images that each GEMM has a few hundred columns even where Ho*Wo is
// small (7x7 at 224 px, 2x2 at 64 px); one image per chunk when Ho*Wo is already large, and
// then 1x1 stride-1 unpadded convolutions skip im2col (the input is the column matrix).
// Depthwise convolutions (groups == Cin == Cout) use a direct loop: their GEMMs would be 1xK.
// Output planes of at most 256 positions build their columns through index tables into a
// zero-bordered copy of each channel (im2col_padded). 3x3 stride-1 layers run their forward and
// backward-data passes as Winograd F(4x4,3x3) or F(2x2,3x3), and on wide enough planes their
// filter gradients as F(2x2,3x3), under ConvAlgorithm::Auto (winograd.cpp; winograd_tile and
// use_winograd_filter below say where). Planes of 2x2 and smaller under a 3x3 kernel run all three
// passes as one dense matrix per layer (dense_conv.cpp; use_dense).
// Gradient rule: outputs are written (=); dW accumulates over the batch inside this file only.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "simd_avx512.hpp"  // first: <immintrin.h> with GCC 12's false uninitialised warnings silenced
//
#include "dense_conv.hpp"
#include "epilogue.hpp"
#include "gemm.hpp"
#include "kernels.hpp"
#include "packed_gemm.hpp"
#include "winograd.hpp"

#if defined(__AVX512F__) && !defined(FSAD_NO_AVX512)
#define FSAD_CONV_AVX512 1
#else
#define FSAD_CONV_AVX512 0
#endif

namespace fsad::cpu {
namespace {

// out[i] = in[2 i] for i in [0, n): the stride-2 rows of im2col (the 7x7 stem, stride-2 3x3s).
// With AVX-512, 16 outputs from two loads and one two-source permute; the vector loop stops
// while its second load still ends inside [in, in + 2n - 1).
inline void copy_stride2(const float* in, float* out, int64_t n) {
    int64_t i = 0;
#if FSAD_CONV_AVX512
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (; i + 16 < n; i += 16) {
        const __m512 a = _mm512_loadu_ps(in + 2 * i), b = _mm512_loadu_ps(in + 2 * i + 16);
        _mm512_storeu_ps(out + i, _mm512_permutex2var_ps(a, even, b));
    }
#endif
    for (; i < n; ++i) out[i] = in[2 * i];
}

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

// Output columns ow whose input column ow*stride + off lies in [0, w): [lo, hi).
inline void valid_range(int64_t off, int64_t stride, int64_t w, int64_t wo, int64_t& lo, int64_t& hi) {
    // smallest ow with ow*stride + off >= 0, and first ow with ow*stride + off >= w
    lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    hi = w - off <= 0 ? 0 : (w - off + stride - 1) / stride;
    lo = std::min(lo, wo);
    hi = std::clamp(hi, lo, wo);
}

// col[(c*kh + i)*kw + j][q - q0] = x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw] (0 outside),
// for output positions q = oh*wo + ow in [q0, q1); row r starts at col + r*ld. Runs on the
// calling thread.
void im2col(const float* x, const Geometry& g, const Conv2dParams& p, float* col, int64_t q0, int64_t q1, int64_t ld) {
    const int64_t rows = g.cin_g * g.kh * g.kw;
    if (q1 <= q0) return;
    const int64_t oh_first = q0 / g.wo, oh_last = (q1 - 1) / g.wo;
    const int64_t sw = p.stride_w;
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
        const float* xc = x + c * g.h * g.w;
        float* o = col + r * ld;
        const int64_t off = j * p.dil_w - p.pad_w;
        int64_t lo, hi;  // valid output columns of this kernel column, for every row
        valid_range(off, sw, g.w, g.wo, lo, hi);
        for (int64_t oh = oh_first; oh <= oh_last; ++oh) {
            const int64_t a = oh == oh_first ? q0 % g.wo : 0, b = oh == oh_last ? (q1 - 1) % g.wo + 1 : g.wo;
            const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
            float* out = o - a;  // out[ow] for ow in [a, b)
            if (ih < 0 || ih >= g.h) {
                for (int64_t ow = a; ow < b; ++ow) out[ow] = 0.0f;
            } else {
                const float* xr = xc + ih * g.w + off;
                const int64_t l = std::clamp(lo, a, b), h = std::clamp(hi, l, b);
                for (int64_t ow = a; ow < l; ++ow) out[ow] = 0.0f;
                if (sw == 1)
                    for (int64_t ow = l; ow < h; ++ow) out[ow] = xr[ow];
                else if (sw == 2)
                    copy_stride2(xr + 2 * l, out + l, h - l);
                else
                    for (int64_t ow = l; ow < h; ++ow) out[ow] = xr[ow * sw];
                for (int64_t ow = h; ow < b; ++ow) out[ow] = 0.0f;
            }
            o += b - a;
        }
    }
}

// Adjoint of im2col (full range): dx[c][ih][iw] = sum of the col entries that read it.
// Rows of col start at col + r*ld. Branch-free inner loops (contiguous adds for stride 1).
void col2im(const float* col, int64_t ld, const Geometry& g, const Conv2dParams& p, float* dx) {
    for (int64_t c = 0; c < g.cin_g; ++c) {
        float* xc = dx + c * g.h * g.w;
        std::fill(xc, xc + g.h * g.w, 0.0f);
        for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
                const float* in = col + ((c * g.kh + i) * g.kw + j) * ld;
                const int64_t off = j * p.dil_w - p.pad_w;
                int64_t lo, hi;
                valid_range(off, p.stride_w, g.w, g.wo, lo, hi);
                for (int64_t oh = 0; oh < g.ho; ++oh) {
                    const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dil_h;
                    if (ih < 0 || ih >= g.h) continue;
                    float* xr = xc + ih * g.w + off;
                    const float* o = in + oh * g.wo;
                    if (p.stride_w == 1) {
                        for (int64_t ow = lo; ow < hi; ++ow) xr[ow] += o[ow];
                    } else {
                        const int64_t sw = p.stride_w;
                        for (int64_t ow = lo; ow < hi; ++ow) xr[ow * sw] += o[ow];
                    }
                }
            }
    }
}

// Small output planes (deep layers, small images): the general im2col above spends its time on
// loop overhead (runs of 2-8 floats). Instead each input channel is copied once into a
// zero-bordered plane and every kernel offset (i, j) reads it through a precomputed index
// table: col row (c, i, j) [q] = padded_c[table_ij[q]], branch-free. col2im is the same with
// the tables scattered into a zeroed padded plane, whose interior is then copied out.
struct PaddedPlan {
    bool enabled = false;
    int64_t hp = 0, wp = 0;      // padded plane
    std::vector<int32_t> table;  // [kh*kw][ho*wo] indices into the padded plane
};

constexpr int64_t kSmallPlane = 256;  // output positions per image at or below which the tables pay

PaddedPlan padded_plan(const Geometry& g, const Conv2dParams& p) {
    PaddedPlan P;
    const int64_t hw = g.ho * g.wo;
    if (hw > kSmallPlane || g.pointwise || hw == 0) return P;
    P.enabled = true;
    P.hp = g.h + 2 * p.pad_h;
    P.wp = g.w + 2 * p.pad_w;
    P.table.resize(static_cast<size_t>(g.kh * g.kw * hw));
    for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
            for (int64_t oh = 0; oh < g.ho; ++oh)
                for (int64_t ow = 0; ow < g.wo; ++ow)
                    P.table[static_cast<size_t>((i * g.kw + j) * hw + oh * g.wo + ow)] = static_cast<int32_t>(
                        (oh * p.stride_h + i * p.dil_h) * P.wp + ow * p.stride_w + j * p.dil_w);
    return P;
}

// The padded planes' interior starts at pad_h rows, pad_w columns.
void im2col_padded(const float* x, const Geometry& g, const Conv2dParams& p, const PaddedPlan& P, float* padded,
                   float* col, int64_t ld) {
    const int64_t hw = g.ho * g.wo, kk = g.kh * g.kw;
    for (int64_t c = 0; c < g.cin_g; ++c) {
        const float* xc = x + c * g.h * g.w;
        for (int64_t ih = 0; ih < g.h; ++ih)
            std::copy(xc + ih * g.w, xc + (ih + 1) * g.w, padded + (ih + p.pad_h) * P.wp + p.pad_w);
        for (int64_t r = 0; r < kk; ++r) {
            const int32_t* t = P.table.data() + r * hw;
            float* o = col + (c * kk + r) * ld;
            for (int64_t q = 0; q < hw; ++q) o[q] = padded[t[q]];
        }
    }
}

void col2im_padded(const float* col, int64_t ld, const Geometry& g, const Conv2dParams& p, const PaddedPlan& P,
                   float* padded, float* dx) {
    const int64_t hw = g.ho * g.wo, kk = g.kh * g.kw;
    for (int64_t c = 0; c < g.cin_g; ++c) {
        std::fill(padded, padded + P.hp * P.wp, 0.0f);
        for (int64_t r = 0; r < kk; ++r) {
            const int32_t* t = P.table.data() + r * hw;
            const float* in = col + (c * kk + r) * ld;
            for (int64_t q = 0; q < hw; ++q) padded[t[q]] += in[q];
        }
        float* xc = dx + c * g.h * g.w;
        for (int64_t ih = 0; ih < g.h; ++ih) {
            const float* src = padded + (ih + p.pad_h) * P.wp + p.pad_w;
            std::copy(src, src + g.w, xc + ih * g.w);
        }
    }
}

// The bias (as a plain shift) starts each sum; any other epilogue is applied to the finished plane.
void depthwise_forward(const float* x, const float* w, const Epilogue& e, const Geometry& g, const Conv2dParams& p,
                       float* y) {
    const bool bias_only = !e.scale && e.act == math::Activation::Identity && !e.residual;
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < g.n * g.cin; ++nc) {
        int64_t c = nc % g.cin;
        const float* xc = x + nc * g.h * g.w;
        const float* wc = w + c * g.kh * g.kw;
        float* yc = y + nc * g.ho * g.wo;
        const float bias = bias_only && e.shift ? e.shift[c] : 0.0f;
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
        if (!bias_only) e.apply(yc, g.ho * g.wo, c);
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

// Images per chunk: enough for ~kCols GEMM columns, at most an even share of the batch per
// thread, and a column buffer of at most ~8 MiB.
// The count is then evened out so that every thread gets the same number of chunks.
int64_t chunk_images(const Geometry& g, int nt) {
    constexpr int64_t kCols = 384;
    const int64_t hw = g.ho * g.wo;
    int64_t b = std::max<int64_t>(1, (kCols + hw - 1) / hw);
    const int64_t per_thread = std::max<int64_t>(1, (g.n + nt - 1) / nt);
    b = std::min<int64_t>(b, per_thread);
    b = std::min<int64_t>(b, std::max<int64_t>(1, (int64_t(2) << 20) / std::max<int64_t>(1, g.k * hw)));
    const int64_t chunks_per_thread = (per_thread + b - 1) / b;
    b = (per_thread + chunks_per_thread - 1) / chunks_per_thread;
    return std::min<int64_t>(b, std::max<int64_t>(g.n, 1));
}

// The column matrix [k, nb*hw] of images [n0, n0+nb), group gr: the input itself when `direct`
// (one image, 1x1 stride-1 unpadded), else im2col of each image into `col`.
// Small planes go through `padded` (P.hp * P.wp floats whose border is zero).
const float* chunk_columns(const float* xp, const Geometry& g, const Conv2dParams& p, int64_t n0, int64_t nb,
                           int64_t gr, bool direct, const Tensor& col, const PaddedPlan& P, float* padded) {
    const float* first = xp + (n0 * g.cin + gr * g.cin_g) * g.h * g.w;
    if (direct) return first;
    const int64_t hw = g.ho * g.wo;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xi = xp + ((n0 + i) * g.cin + gr * g.cin_g) * g.h * g.w;
        if (P.enabled) im2col_padded(xi, g, p, P, padded, col.data() + i * hw, nb * hw);
        else im2col(xi, g, p, col.data() + i * hw, 0, hw, nb * hw);
    }
    return col.data();
}

// A per-thread padded plane with a zero border (empty when the plan is disabled).
std::vector<float> padded_buffer(const PaddedPlan& P) {
    return std::vector<float>(P.enabled ? static_cast<size_t>(P.hp * P.wp) : 0, 0.0f);
}

// Copies the [cout_g, hw] planes of images [n0, n0+b) of group gr between NCHW `t` and a
// [cout_g, b*hw] matrix `m` (to_matrix: t -> m, else m -> t).
void chunk_layout(float* t, float* m, const Geometry& g, int64_t n0, int64_t b, int64_t gr, bool to_matrix) {
    const int64_t hw = g.ho * g.wo;
    for (int64_t o = 0; o < g.cout_g; ++o)
        for (int64_t i = 0; i < b; ++i) {
            float* plane = t + ((n0 + i) * g.cout + gr * g.cout_g + o) * hw;
            float* row = m + o * b * hw + i * hw;
            if (to_matrix) std::copy(plane, plane + hw, row);
            else std::copy(row, row + hw, plane);
        }
}

namespace {
// Winograd for the forward and backward-data passes: always when asked for, and under Auto where
// it measured faster than im2col + GEMM (ResNet18 training and inference steps at 64 and 224 px),
// outputs at least 4 columns wide (on 2x2 outputs, one tile per image, it gained nothing) and
// channel counts that give the GEMMs some depth:
// - F(4x4,3x3) from 28 output columns up, at any batch (ResNet18 at 224 px, layers 1-2:
//   inference batch 32 -10%, training step -4.5%; batch 1, the tiles split across threads,
//   -11%; interleaved runs);
// - F(2x2,3x3) below, with at least one image per thread. 4x4 tiles pad more there (14x14 ->
//   16x16), their transformed filters are 2.25x larger and the GEMMs get fewer columns (layers
//   3-4 and 64 px images measured slower or no faster); at batch 1 the filter transform of these
//   deep layers costs more than the products it saves (measured slower at 14 columns). With
//   prepared weights (transformed once) F(2x2) on ResNet18's layer3 at batch 1 wins alone (0.49
//   ms against 0.58 with the packed GEMM, weights hot in cache) but loses in the whole network
//   (+10%, interleaved runs): its filters are 1.8x the weights' bytes, read cold, by both threads.
int winograd_tile(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
    if (!winograd::applicable(x, w, p)) return 0;
    switch (ops::conv_algorithm()) {
    case ops::ConvAlgorithm::Winograd: return 2;
    case ops::ConvAlgorithm::Winograd4: return 4;
    case ops::ConvAlgorithm::Gemm: return 0;
    case ops::ConvAlgorithm::Auto: break;
    }
    const int64_t wo = x.dim(3) + 2 * p.pad_w - 2;
    if (wo < 4 || x.dim(1) < 16 || w.dim(0) < 16) return 0;
    if (wo >= 28) return 4;
    return x.dim(0) >= omp_get_max_threads() ? 2 : 0;
}
// Filter gradients: F(2x2,3x3) Winograd where the output is at least 8 wide (with the batch and
// channel conditions above): ResNet18 training step 224 px -6%, 64 px -3%, BYOL step 64 px -4%
// (interleaved runs; from 4 columns up it was slower at 224 px, from 16 or 28 up it gained
// less). Below that im2col + GEMM. Why not everywhere: Winograd's filter gradient is a
// combination of transformed sums, so where a true gradient is exactly zero it returns rounding
// noise of ~1e-6 instead (Adam would turn that into lr-sized steps). That needs a tap that meets
// only zeros over the whole batch; on planes 8+ wide with padding <= 2 every tap meets interior
// pixels, and a channel that is zero everywhere (dead after ReLU) transforms to exact zeros.
// Tiny planes (2x2, where a corner tap meets one pixel per image) are where it can happen.
bool use_winograd_filter(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
    if (!winograd::applicable(x, w, p)) return false;
    switch (ops::conv_algorithm()) {
    case ops::ConvAlgorithm::Winograd: return true;
    case ops::ConvAlgorithm::Winograd4:
    case ops::ConvAlgorithm::Gemm: return false;
    case ops::ConvAlgorithm::Auto: break;
    }
    const int64_t wo = x.dim(3) + 2 * p.pad_w - 2;
    return wo >= 8 && x.dim(1) >= 16 && w.dim(0) >= 16 && x.dim(0) >= omp_get_max_threads();
}
// Tiny input planes (2x2 and smaller under a 3x3 kernel: ResNet18's layer4 at 64 px) as one
// dense matrix per layer (dense_conv.cpp): 4 products per output instead of im2col's 9, exact
// zeros kept in the filter gradient. Under Auto, from kDenseMinBatch images up (the matrix is
// rebuilt on every call; a few images do not pay for it).
constexpr int64_t kDenseMinBatch = 8;
bool use_dense(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
    return ops::conv_algorithm() == ops::ConvAlgorithm::Auto && x.dim(0) >= kDenseMinBatch &&
           dense_conv::applicable(x, w, p);
}
}  // namespace

namespace {
// The forms of an ops::PreparedConv on the CPU: the weights packed for packed_gemm under
// kPackedForm, Winograd's (transformed filters, and those packed) under the numbers winograd.cpp
// gives them (2, 4, 102, 104).
constexpr int kPackedForm = 0;
constexpr int64_t kPackMinColumns = 128;

// Every forward path; `e` is applied to each output as it is written (bias, or BatchNorm + act).
// Threading: with at least as many images as threads, each thread takes whole chunks (its own
// buffers, single-threaded GEMMs: no synchronisation, cache-friendly). With fewer images
// (inference on one image) the output positions of each image are split across threads.
// With prepared weights (`prep`), ungrouped convolutions multiply by the packed weights
// (packed_gemm, where the build has it) instead of OpenBLAS's sgemm, which repacks them per call.
void forward(const Tensor& x, const Tensor& w, const Epilogue& e, const Conv2dParams& p, const Tensor& y,
             const ops::PreparedConv* prep) {
    const Geometry g = geometry(x, w, y, p);
    const float* xp = x.data();
    const float* wp = w.data();
    float* yp = y.data();
    if (g.depthwise && g.cin_g == 1) {
        depthwise_forward(xp, wp, e, g, p, yp);
        return;
    }
    if (use_dense(x, w, p)) {
        dense_conv::conv2d_forward(x, w, e, p, y);
        return;
    }
    if (const int tile = winograd_tile(x, w, p)) {
        winograd::conv2d_forward(x, w, e, p, y, tile, prep);
        return;
    }
    const int64_t hw = g.ho * g.wo;
    const int nt = omp_get_max_threads();
    // the packed weights, or null: sgemm. Not below depth 128: the packed kernel's per-block
    // write-out then weighs (MobileNetV2's 1x1 convolutions of depth 16-96 at 112x112 measured
    // slower; from 128 up every shape measured faster, by 5-45%). Prepared weights are packed
    // once; otherwise they are packed here, for this call, where each product has at least
    // kPackMinColumns columns (what the three paths below give it): packing costs as much as
    // OpenBLAS's own, and the kernel gains ~20% on wide products but on ResNet18's layer4 at
    // batch 1 (49 columns) packing + product measured slower than sgemm.
    const float* ap = nullptr;
    Tensor packed_now;
    if (g.groups == 1 && g.k >= 128 && packed_gemm::available()) {
        auto pack = [&] { return packed_gemm::pack(wp, g.cout, g.k, g.k); };
        const int64_t columns = g.n >= nt ? chunk_images(g, nt) * hw : hw >= 256 * nt ? 256 : hw;
        if (prep) {
            ap = prep->form(kPackedForm, pack).data();
        } else if (columns >= kPackMinColumns) {
            packed_now = pack();
            ap = packed_now.data();
        }
    }
    const int64_t panels = packed_gemm::panel_count(g.cout);
    // ym [cout_g, ld] = weights of group gr * cm [k, ld] (leading dimensions ldb, ldc)
    auto multiply = [&](int64_t gr, const float* cm, int64_t ld, int64_t ldb, float* ym, int64_t ldc) {
        if (ap) packed_gemm::multiply(ap, g.cout, g.k, 0, panels, cm, ld, ldb, ym, ldc);
        else sgemm(false, false, g.cout_g, ld, g.k, 1.0f, wp + gr * g.cout_g * g.k, g.k, cm, ldb, 0.0f, ym, ldc);
    };
    // the epilogue on output channels [o0, o1) of group gr, positions [q0, q1) of image n
    auto finish = [&](int64_t n, int64_t gr, int64_t o0, int64_t o1, int64_t q0, int64_t q1) {
        if (e.none()) return;
        for (int64_t o = o0; o < o1; ++o)
            e.apply(yp + (n * g.cout + gr * g.cout_g + o) * hw + q0, q1 - q0, gr * g.cout_g + o);
    };
    if (g.n >= nt) {
        const int64_t b = chunk_images(g, nt), chunks = (g.n + b - 1) / b;
        const PaddedPlan plan = padded_plan(g, p);
#pragma omp parallel
        {
            const bool direct = b == 1 && g.pointwise;
            Tensor col = direct ? Tensor() : Tensor::empty(Shape{g.k * b * hw});
            std::vector<float> padded = padded_buffer(plan);
            Tensor out = b == 1 ? Tensor() : Tensor::empty(Shape{g.cout_g * b * hw});
#pragma omp for schedule(static)
            for (int64_t c = 0; c < chunks; ++c) {
                const int64_t n0 = c * b, nb = std::min(b, g.n - n0), ld = nb * hw;
                for (int64_t gr = 0; gr < g.groups; ++gr) {
                    const float* cm = chunk_columns(xp, g, p, n0, nb, gr, direct, col, plan, padded.data());
                    float* ym = b == 1 ? yp + (n0 * g.cout + gr * g.cout_g) * hw : out.data();
                    multiply(gr, cm, ld, ld, ym, ld);
                    if (b != 1) chunk_layout(yp, out.data(), g, n0, nb, gr, false);
                    for (int64_t i = 0; i < nb; ++i) finish(n0 + i, gr, 0, g.cout_g, 0, hw);
                }
            }
        }
    } else if (hw >= 256 * nt) {
        // few images, many positions: each thread takes a range of output positions. With packed
        // weights (which need no packing of the columns either) in steps of ~256 KiB of columns,
        // so that im2col writes and the product reads them in the level-2 cache (the 7x7 stem at
        // batch 1: 7 MiB of columns otherwise)
#pragma omp parallel
        {
            const int t = omp_get_thread_num(), T = omp_get_num_threads();
            const int64_t chunk = ((hw + T - 1) / T + 15) / 16 * 16;
            const int64_t q0 = std::min<int64_t>(hw, t * chunk), q1 = std::min<int64_t>(hw, q0 + chunk);
            const int64_t step = ap ? std::max<int64_t>(16, (int64_t(64) << 10) / g.k / 16 * 16) : q1 - q0;
            Tensor col = g.pointwise || q1 <= q0 ? Tensor() : Tensor::empty(Shape{g.k * std::min(step, q1 - q0)});
            for (int64_t n = 0; n < g.n; ++n)
                for (int64_t gr = 0; gr < g.groups; ++gr)
                    for (int64_t qa = q0; qa < q1; qa += step) {
                        const int64_t qb = std::min(q1, qa + step);
                        const float* xg = xp + (n * g.cin + gr * g.cin_g) * g.h * g.w;
                        const float* cm = xg + qa;
                        int64_t ldc = hw;
                        if (!g.pointwise) {
                            im2col(xg, g, p, col.data(), qa, qb, qb - qa);
                            cm = col.data();
                            ldc = qb - qa;
                        }
                        float* yg = yp + (n * g.cout + gr * g.cout_g) * hw + qa;
                        multiply(gr, cm, qb - qa, ldc, yg, hw);
                        finish(n, gr, 0, g.cout_g, qa, qb);
                    }
        }
    } else {
        // few images, few positions (deep layers at batch 1): one shared im2col, then each
        // thread takes a range of output channels
        Tensor col = g.pointwise ? Tensor() : Tensor::empty(Shape{g.k * hw});
        for (int64_t n = 0; n < g.n; ++n)
            for (int64_t gr = 0; gr < g.groups; ++gr) {
                const float* xg = xp + (n * g.cin + gr * g.cin_g) * g.h * g.w;
                const float* cm = xg;
                if (!g.pointwise) {
                    const int64_t rows = g.k / (g.kh * g.kw);
#pragma omp parallel for schedule(static)
                    for (int64_t c = 0; c < rows; ++c) {
                        // im2col of one input channel = rows [c*kh*kw, (c+1)*kh*kw) of col
                        Geometry one = g;
                        one.cin_g = 1;
                        im2col(xg + c * g.h * g.w, one, p, col.data() + c * g.kh * g.kw * hw, 0, hw, hw);
                    }
                    cm = col.data();
                }
                float* yg = yp + (n * g.cout + gr * g.cout_g) * hw;
#pragma omp parallel
                {
                    const int t = omp_get_thread_num(), T = omp_get_num_threads();
                    if (ap && panels >= T) {  // whole panels of packed rows per thread
                        const int64_t per = (panels + T - 1) / T;
                        const int64_t p0 = std::min(panels, t * per), p1 = std::min(panels, p0 + per);
                        const int64_t r0 = std::min(g.cout, p0 * packed_gemm::kPanel),
                                      r1 = std::min(g.cout, p1 * packed_gemm::kPanel);
                        if (p1 > p0) packed_gemm::multiply(ap, g.cout, g.k, p0, p1, cm, hw, hw, yg, hw);
                        finish(n, gr, r0, r1, 0, hw);
                    } else if (ap) {  // fewer panels than threads: ranges of columns
                        const int64_t chunk = (hw + T - 1) / T;
                        const int64_t q0 = std::min(hw, t * chunk), q1 = std::min(hw, q0 + chunk);
                        if (q1 > q0) packed_gemm::multiply(ap, g.cout, g.k, 0, panels, cm + q0, q1 - q0, hw, yg + q0, hw);
#pragma omp barrier
                        const int64_t rows = (g.cout + T - 1) / T;
                        const int64_t r0 = std::min(g.cout, t * rows), r1 = std::min(g.cout, r0 + rows);
                        finish(n, gr, r0, r1, 0, hw);
                    } else {
                        const int64_t rows = (g.cout_g + T - 1) / T;
                        const int64_t r0 = std::min<int64_t>(g.cout_g, t * rows),
                                      r1 = std::min<int64_t>(g.cout_g, r0 + rows);
                        if (r1 > r0) {
                            sgemm(false, false, r1 - r0, hw, g.k, 1.0f, wp + (gr * g.cout_g + r0) * g.k, g.k, cm, hw,
                                  0.0f, yg + r0 * hw, hw);
                            finish(n, gr, r0, r1, 0, hw);
                        }
                    }
                }
            }
    }
}
}  // namespace

bool conv_packing_available() { return packed_gemm::available(); }

// Precision::BF16 on the CPU: the definition the GPU implements (ops.hpp), computed in float32:
// operands rounded to bfloat16, float32 sums, the result rounded, then the epilogue (bias, or
// batch norm, residual and activation) in float32. No faster than FP32; it gives the GPU's
// numbers where there is no GPU (parity tests, studies of bfloat16's effect on accuracy).
namespace {
bool bf16() { return ops::precision() == ops::Precision::BF16; }
Tensor rounded(const Tensor& t) {
    Tensor r = Tensor::empty(t.shape());
    round_bf16(t, r);
    return r;
}
// the bfloat16 result of conv(x, w) in y, then e applied plane by plane
void forward_bf16(const Tensor& x, const Tensor& w, const Epilogue& e, const Conv2dParams& p, const Tensor& y) {
    forward(rounded(x), rounded(w), Epilogue{}, p, y, nullptr);
    round_bf16(y, y);
    if (e.none()) return;
    const int64_t n = y.dim(0), c = y.dim(1), hw = y.dim(2) * y.dim(3);
#pragma omp parallel for schedule(static)
    for (int64_t plane = 0; plane < n * c; ++plane) e.apply(y.data() + plane * hw, hw, plane % c);
}
}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p, const Tensor& y) {
    const Epilogue e{nullptr, bias ? bias->data() : nullptr, math::Activation::Identity};
    if (bf16()) return forward_bf16(x, w, e, p, y);
    forward(x, w, e, p, y, nullptr);
}

void conv2d_bn_eval_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, float eps, const Conv2dParams& p,
                            math::Activation act, const Tensor* residual, const PreparedConv* prepared,
                            const Tensor& y) {
    // the scale and shift of batchnorm_forward_eval, per output channel
    const int64_t c = w.dim(0);
    std::vector<float> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
    for (int64_t i = 0; i < c; ++i)
        math::bn_eval_affine(gamma.data()[i], beta.data()[i], running_mean.data()[i], running_var.data()[i], eps,
                             scale[static_cast<size_t>(i)], shift[static_cast<size_t>(i)]);
    const Epilogue e{scale.data(), shift.data(), act, residual ? residual->data() : nullptr, y.data()};
    if (bf16()) return forward_bf16(x, w, e, p, y);  // the prepared forms hold the unrounded weights
    forward(x, w, e, p, y, prepared);
}

namespace {
void backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dParams& p, const Tensor* dx, const Tensor* dw,
              const Tensor* db) {
    const Geometry g = geometry(x, w, dy, p);
    const int64_t hw = g.ho * g.wo;
    const float* xp = x.data();
    const float* wp = w.data();
    float* dyp = dy.data();
    if (db) {
        float* dbp = db->data();
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < g.cout; ++c) {
            double s = 0.0;
            for (int64_t n = 0; n < g.n; ++n) {
                const float* d = dyp + (n * g.cout + c) * hw;
                for (int64_t i = 0; i < hw; ++i) s += d[i];
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
    if (use_dense(x, w, p)) {
        dense_conv::conv2d_backward(x, w, dy, p, dx, dw);
        return;
    }
    if (const int tile = dx ? winograd_tile(x, w, p) : 0) {
        winograd::conv2d_backward_data(w, dy, p, *dx, tile);
        dx = nullptr;  // done
    }
    if (dw && use_winograd_filter(x, w, p)) {
        winograd::conv2d_backward_filter(x, dy, p, *dw);
        dw = nullptr;
    }
    if (!dx && !dw) return;
    float* dwp = dw ? dw->data() : nullptr;
    float* dxp = dx ? dx->data() : nullptr;
    const int nt = omp_get_max_threads();
    const int64_t wsize = g.cout * g.k;  // = w.numel()
    const int64_t b = chunk_images(g, nt), chunks = (g.n + b - 1) / b;
    // One pass over the chunks. Filter gradients: the thread that takes chunk 0 (thread 0 under
    // a static schedule) accumulates straight into dw, the others into private buffers that are
    // added afterwards in thread order (results do not depend on timing). Each thread's first
    // GEMM overwrites (beta = 0), so nothing needs zeroing first.
    std::vector<Tensor> partial(static_cast<size_t>(nt));
    std::vector<char> used(static_cast<size_t>(nt), 0);
    const PaddedPlan plan = padded_plan(g, p);
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        const bool direct = b == 1 && g.pointwise;
        std::vector<float> padded = padded_buffer(plan);     // im2col reads: border stays zero
        std::vector<float> padded_dx = padded_buffer(plan);  // col2im accumulates: zeroed per channel
        Tensor col = (!dwp || direct) ? Tensor() : Tensor::empty(Shape{g.k * b * hw});
        Tensor dcol = (!dxp || direct) ? Tensor() : Tensor::empty(Shape{g.k * b * hw});
        Tensor dym = b == 1 ? Tensor() : Tensor::empty(Shape{g.cout_g * b * hw});
        float* acc = nullptr;
        bool first = true;
#pragma omp for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) {
            if (dwp && !acc) {
                if (c == 0) {
                    acc = dwp;
                } else {
                    partial[static_cast<size_t>(t)] = Tensor::empty(Shape{wsize});
                    acc = partial[static_cast<size_t>(t)].data();
                }
                used[static_cast<size_t>(t)] = 1;
            }
            const int64_t n0 = c * b, nb = std::min(b, g.n - n0), ld = nb * hw;
            for (int64_t gr = 0; gr < g.groups; ++gr) {
                const float* dyg = dyp + (n0 * g.cout + gr * g.cout_g) * hw;
                if (b != 1) {
                    chunk_layout(dyp, dym.data(), g, n0, nb, gr, true);
                    dyg = dym.data();
                }
                const float* wg = wp + gr * g.cout_g * g.k;
                if (acc) {
                    const float* cm = chunk_columns(xp, g, p, n0, nb, gr, direct, col, plan, padded.data());
                    // dW[g] (cout_g x k) (+)= dY (cout_g x ld) * col^T (ld x k)
                    sgemm(false, true, g.cout_g, g.k, ld, 1.0f, dyg, ld, cm, ld, first ? 0.0f : 1.0f,
                          acc + gr * g.cout_g * g.k, g.k);
                }
                if (dxp) {
                    float* target = direct ? dxp + (n0 * g.cin + gr * g.cin_g) * g.h * g.w : dcol.data();
                    // dcol (k x ld) = W^T (k x cout_g) * dY (cout_g x ld)
                    sgemm(true, false, g.k, ld, g.cout_g, 1.0f, wg, g.k, dyg, ld, 0.0f, target, ld);
                    if (!direct)
                        for (int64_t i = 0; i < nb; ++i) {
                            float* dxi = dxp + ((n0 + i) * g.cin + gr * g.cin_g) * g.h * g.w;
                            if (plan.enabled) col2im_padded(dcol.data() + i * hw, ld, g, p, plan, padded_dx.data(), dxi);
                            else col2im(dcol.data() + i * hw, ld, g, p, dxi);
                        }
                }
            }
            first = false;
        }
    }
    if (dwp) {
        std::vector<const float*> parts;
        for (size_t t = 0; t < partial.size(); ++t)
            if (used[t] && partial[t].defined()) parts.push_back(partial[t].data());
        if (!parts.empty()) {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < wsize; ++i) {
                float s = dwp[i];
                for (const float* q : parts) s += q[i];
                dwp[i] = s;
            }
        }
    }
}
}  // namespace

void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dParams& p, const Tensor* dx,
                     const Tensor* dw, const Tensor* db) {
    if (!bf16() || (!dx && !dw)) return backward(x, w, dy, p, dx, dw, db);
    // BF16: dx = bf16(conv_bwd_data(bf16(dy), bf16(w))), dw = bf16(conv_bwd_filter(bf16(x), bf16(dy))),
    // db from dy in float32
    if (db) backward(x, w, dy, p, nullptr, nullptr, db);
    backward(dw ? rounded(x) : x, dx ? rounded(w) : w, rounded(dy), p, dx, dw, nullptr);
    if (dx) round_bf16(*dx, *dx);
    if (dw) round_bf16(*dw, *dw);
}

}  // namespace fsad::cpu
