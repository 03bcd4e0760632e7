// Convolution on tiny planes (ResNet18's layer4 at 64 px: 2x2) as a dense linear map.
//
// A convolution of one image is a linear map from its Cin*P_in input values to its Cout*P_out
// outputs. Written as a matrix (rows co*P_out + q, columns ci*P_in + p),
//   A[co*P_out + q][ci*P_in + p] = w[co][ci][tap(q, p)]   (0 where no tap joins q and p),
// the batch is three GEMMs on the tensors as they lie in memory (NCHW: an image is one row):
//   forward:         Y  [N, Cout*P_out] = X  [N, Cin*P_in] * A^T
//   backward data:   dX [N, Cin*P_in]   = dY [N, Cout*P_out] * A
//   backward filter: dA = dY^T * X, then dw[co][ci][t] = sum of dA over the (q, p) with tap t.
// Im2col multiplies Cout*Cin*KhKw per output position, A Cout*Cin*P_in: on a 2x2 plane under a
// 3x3 kernel 4 instead of 9 (the other 5 taps read padding). A is never built whole: each thread
// fills a block of it (a few output channels, or a few input channels) that stays in cache and
// multiplies with it at once. The filter gradient sums exact products over the batch and then
// over the positions, so a tap that meets only zeros gets an exact zero (unlike Winograd's).
#include "dense_conv.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "gemm.hpp"

namespace fsad::cpu::dense_conv {
namespace {

// Channels per block of A (2x2 planes: 128 rows or columns, 1 MB at 2048 columns). Blocks of 8
// and 16 channels measured slower on the ResNet18 training and BYOL steps at 64 px (interleaved
// runs: 16 was 1-5% slower than 32).
constexpr int64_t kBlock = 32;

struct Map {
    int64_t n, cin, cout, kk, pin, pout, rows, cols;
    std::vector<int> tap;  // tap[q * pin + p]: kernel tap joining output q and input p, or -1
};

Map make_map(const Tensor& x, const Tensor& w, const ops::Conv2dParams& p) {
    Map m;
    m.n = x.dim(0);
    m.cin = x.dim(1);
    m.cout = w.dim(0);
    const int64_t h = x.dim(2), wd = x.dim(3), kh = w.dim(2), kw = w.dim(3);
    const int64_t ho = ops::conv_out_size(h, static_cast<int>(kh), p.stride_h, p.pad_h, p.dil_h);
    const int64_t wo = ops::conv_out_size(wd, static_cast<int>(kw), p.stride_w, p.pad_w, p.dil_w);
    m.kk = kh * kw;
    m.pin = h * wd;
    m.pout = ho * wo;
    m.rows = m.cout * m.pout;
    m.cols = m.cin * m.pin;
    m.tap.assign(static_cast<size_t>(m.pout * m.pin), -1);
    for (int64_t oy = 0; oy < ho; ++oy)
        for (int64_t ox = 0; ox < wo; ++ox)
            for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) {
                    const int64_t iy = oy * p.stride_h - p.pad_h + i * p.dil_h, ix = ox * p.stride_w - p.pad_w + j * p.dil_w;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                    m.tap[static_cast<size_t>((oy * wo + ox) * m.pin + iy * wd + ix)] = static_cast<int>(i * kw + j);
                }
    return m;
}

// One row of A (output channel co, position q) over input channels [ci0, ci1): the taps of q,
// all valid (the usual case: on a 2x2 plane every pair of positions is joined by a tap).
template <int PIN>
void fill_row(const float* wco, const int* t, int64_t ci0, int64_t ci1, int64_t kk, float* r) {
    for (int64_t ci = ci0; ci < ci1; ++ci) {
        const float* k = wco + ci * kk;
        float* o = r + (ci - ci0) * PIN;
        for (int p = 0; p < PIN; ++p) o[p] = k[t[p]];
    }
}

// Block of A: rows of output channels [co0, co1), columns of input channels [ci0, ci1), written
// with leading dimension ld starting at `a` (row co0*pout, column ci0*pin).
void fill_block(const Map& m, const float* w, int64_t co0, int64_t co1, int64_t ci0, int64_t ci1, float* a, int64_t ld) {
    for (int64_t q = 0; q < m.pout; ++q) {
        const int* t = m.tap.data() + q * m.pin;
        const bool full = std::all_of(t, t + m.pin, [](int v) { return v >= 0; });
        for (int64_t co = co0; co < co1; ++co) {
            float* row = a + ((co - co0) * m.pout + q) * ld;
            const float* wco = w + co * m.cin * m.kk;
            if (full && m.pin == 4) fill_row<4>(wco, t, ci0, ci1, m.kk, row);
            else if (full && m.pin == 2) fill_row<2>(wco, t, ci0, ci1, m.kk, row);
            else if (full && m.pin == 1) fill_row<1>(wco, t, ci0, ci1, m.kk, row);
            else
                for (int64_t ci = ci0; ci < ci1; ++ci) {
                    const float* k = wco + ci * m.kk;
                    float* r = row + (ci - ci0) * m.pin;
                    for (int64_t p = 0; p < m.pin; ++p) r[p] = t[p] >= 0 ? k[t[p]] : 0.0f;
                }
        }
    }
}

int64_t blocks(int64_t c) { return (c + kBlock - 1) / kBlock; }

}  // namespace

bool applicable(const Tensor& x, const Tensor& w, const ops::Conv2dParams& p) {
    const int64_t kk = w.dim(2) * w.dim(3);
    return p.groups == 1 && kk > 1 && x.dim(2) * x.dim(3) * 2 <= kk;
}

void conv2d_forward(const Tensor& x, const Tensor& w, const Epilogue& e, const ops::Conv2dParams& p, const Tensor& y) {
    const Map m = make_map(x, w, p);
    const float* xp = x.data();
    const float* wp = w.data();
    float* yp = y.data();
    // each block of output channels: fill its rows of A, Y[:, rows] = X * A_rows^T
#pragma omp parallel
    {
        std::vector<float> a(static_cast<size_t>(kBlock * m.pout * m.cols));
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks(m.cout); ++b) {
            const int64_t co0 = b * kBlock, co1 = std::min(m.cout, co0 + kBlock), r0 = co0 * m.pout,
                          nr = (co1 - co0) * m.pout;
            fill_block(m, wp, co0, co1, 0, m.cin, a.data(), m.cols);
            sgemm(false, true, m.n, nr, m.cols, 1.0f, xp, m.cols, a.data(), m.cols, 0.0f, yp + r0, m.rows);
            if (!e.none())
                for (int64_t i = 0; i < m.n; ++i)
                    for (int64_t co = co0; co < co1; ++co) e.apply(yp + i * m.rows + co * m.pout, m.pout, co);
        }
    }
}

void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const ops::Conv2dParams& p, const Tensor* dx,
                     const Tensor* dw) {
    const Map m = make_map(x, w, p);
    const float* xp = x.data();
    const float* wp = w.data();
    const float* dyp = dy.data();
    if (dx) {
        // each block of input channels: fill its columns of A, dX[:, cols] = dY * A_cols
        float* dxp = dx->data();
#pragma omp parallel
        {
            std::vector<float> a(static_cast<size_t>(m.rows * kBlock * m.pin));
#pragma omp for schedule(static)
            for (int64_t b = 0; b < blocks(m.cin); ++b) {
                const int64_t ci0 = b * kBlock, ci1 = std::min(m.cin, ci0 + kBlock), nc = (ci1 - ci0) * m.pin;
                fill_block(m, wp, 0, m.cout, ci0, ci1, a.data(), nc);
                sgemm(false, false, m.n, nc, m.rows, 1.0f, dyp, m.rows, a.data(), nc, 0.0f, dxp + ci0 * m.pin, m.cols);
            }
        }
    }
    if (dw) {
        // each block of output channels: dA_rows = dY[:, rows]^T * X, summed into dw by tap
        float* dwp = dw->data();
#pragma omp parallel
        {
            std::vector<float> da(static_cast<size_t>(kBlock * m.pout * m.cols));
#pragma omp for schedule(static)
            for (int64_t b = 0; b < blocks(m.cout); ++b) {
                const int64_t co0 = b * kBlock, co1 = std::min(m.cout, co0 + kBlock), nr = (co1 - co0) * m.pout;
                sgemm(true, false, nr, m.cols, m.n, 1.0f, dyp + co0 * m.pout, m.rows, xp, m.cols, 0.0f, da.data(), m.cols);
                for (int64_t co = co0; co < co1; ++co) {
                    float* g = dwp + co * m.cin * m.kk;
                    std::fill(g, g + m.cin * m.kk, 0.0f);
                    for (int64_t q = 0; q < m.pout; ++q) {
                        const float* row = da.data() + ((co - co0) * m.pout + q) * m.cols;
                        const int* t = m.tap.data() + q * m.pin;
                        for (int64_t ci = 0; ci < m.cin; ++ci)
                            for (int64_t pp = 0; pp < m.pin; ++pp)
                                if (t[pp] >= 0) g[ci * m.kk + t[pp]] += row[ci * m.pin + pp];
                    }
                }
            }
        }
    }
}

}  // namespace fsad::cpu::dense_conv
