// Pooling on the GPU, with the CPU's semantics (src/cpu/pool.cpp): max pooling treats padding
// as -inf and routes the gradient to the first maximum of each window; average pooling divides
// by kh*kw (padding counted). Backward kernels gather over the windows that cover an input
// element (one thread per input element, no atomics: deterministic).
#include <cfloat>

#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

struct Geo {
    int64_t nc, h, w, ho, wo;
    int kh, kw, sh, sw, ph, pw;
};

__device__ inline void window(int64_t o, int stride, int pad, int k, int64_t size, int64_t& lo, int64_t& hi) {
    lo = o * stride - pad;
    hi = lo + k;
    if (lo < 0) lo = 0;
    if (hi > size) hi = size;
}

// range of outputs whose window covers input i: o*s - p <= i < o*s - p + k (32-bit: coordinates
// within one image)
__device__ inline void covering(int64_t i, int stride, int pad, int k, int64_t out, int64_t& o0, int64_t& o1) {
    const int num = static_cast<int>(i) + pad - k + 1;
    o0 = num <= 0 ? 0 : (num + stride - 1) / stride;
    o1 = (static_cast<int>(i) + pad) / stride + 1;
    if (o1 > out) o1 = out;
}

__device__ inline int64_t argmax_of(const float* xc, const Geo& g, int64_t oh, int64_t ow) {
    int64_t h0, h1, w0, w1;
    window(oh, g.sh, g.ph, g.kh, g.h, h0, h1);
    window(ow, g.sw, g.pw, g.kw, g.w, w0, w1);
    int64_t arg = h0 * g.w + w0;
    float best = xc[arg];
    for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw)
            if (xc[ih * g.w + iw] > best) {
                best = xc[ih * g.w + iw];
                arg = ih * g.w + iw;
            }
    return arg;
}

// Index of a plane, row and column of the flat index j over planes of rows x cols values. I is
// uint32_t when every index fits (one 32-bit division each: a 64-bit one costs dozens of
// instructions per value), int64_t otherwise.
template <class I>
__device__ inline void split_index(I j, int64_t rows, int64_t cols, int64_t& k, int64_t& r, int64_t& c) {
    const I plane = static_cast<I>(rows * cols), q = j / plane, rem = j - q * plane, rq = rem / static_cast<I>(cols);
    k = q;
    r = rq;
    c = rem - rq * static_cast<I>(cols);
}

template <class I>
__global__ void maxpool_fwd_k(const float* x, float* y, Geo g, I total) {
    FSAD_INDEX_LOOP(I, j, total) {
        int64_t k, oh, ow;
        split_index(j, g.ho, g.wo, k, oh, ow);
        const float* xc = x + k * g.h * g.w;
        int64_t h0, h1, w0, w1;
        window(oh, g.sh, g.ph, g.kh, g.h, h0, h1);
        window(ow, g.sw, g.pw, g.kw, g.w, w0, w1);
        float best = -FLT_MAX;
        bool any = false;
        for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) {
                const float v = xc[ih * g.w + iw];
                if (!any || v > best) best = v;
                any = true;
            }
        y[j] = any ? best : -INFINITY;
    }
}

template <class I>
__global__ void maxpool_bwd_k(const float* x, const float* dy, float* dx, Geo g, I total) {
    FSAD_INDEX_LOOP(I, j, total) {
        int64_t k, ih, iw;
        split_index(j, g.h, g.w, k, ih, iw);
        const float* xc = x + k * g.h * g.w;
        const float* dc = dy + k * g.ho * g.wo;
        int64_t oh0, oh1, ow0, ow1;
        covering(ih, g.sh, g.ph, g.kh, g.ho, oh0, oh1);
        covering(iw, g.sw, g.pw, g.kw, g.wo, ow0, ow1);
        float s = 0.0f;
        for (int64_t oh = oh0; oh < oh1; ++oh)
            for (int64_t ow = ow0; ow < ow1; ++ow)
                if (argmax_of(xc, g, oh, ow) == ih * g.w + iw) s += dc[oh * g.wo + ow];
        dx[j] = s;
    }
}

template <class I>
__global__ void avgpool_fwd_k(const float* x, float* y, Geo g, I total) {
    const float inv = 1.0f / static_cast<float>(g.kh * g.kw);
    FSAD_INDEX_LOOP(I, j, total) {
        int64_t k, oh, ow;
        split_index(j, g.ho, g.wo, k, oh, ow);
        const float* xc = x + k * g.h * g.w;
        int64_t h0, h1, w0, w1;
        window(oh, g.sh, g.ph, g.kh, g.h, h0, h1);
        window(ow, g.sw, g.pw, g.kw, g.w, w0, w1);
        float s = 0.0f;
        for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) s += xc[ih * g.w + iw];
        y[j] = s * inv;
    }
}

template <class I>
__global__ void avgpool_bwd_k(const float* dy, float* dx, Geo g, I total) {
    const float inv = 1.0f / static_cast<float>(g.kh * g.kw);
    FSAD_INDEX_LOOP(I, j, total) {
        int64_t k, ih, iw;
        split_index(j, g.h, g.w, k, ih, iw);
        const float* dc = dy + k * g.ho * g.wo;
        int64_t oh0, oh1, ow0, ow1;
        covering(ih, g.sh, g.ph, g.kh, g.ho, oh0, oh1);
        covering(iw, g.sw, g.pw, g.kw, g.wo, ow0, ow1);
        float s = 0.0f;
        for (int64_t oh = oh0; oh < oh1; ++oh)
            for (int64_t ow = ow0; ow < ow1; ++ow) s += dc[oh * g.wo + ow];
        dx[j] = s * inv;
    }
}

// one warp per (n, c) plane
__global__ void global_avg_fwd_k(const float* x, float* y, int64_t nc, int64_t hw) {
    const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
    const int lane = threadIdx.x & 31;
    if (warp >= nc) return;
    const float* p = x + warp * hw;
    double s = 0.0;
    for (int64_t i = lane; i < hw; i += 32) s += p[i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if (lane == 0) y[warp] = static_cast<float>(s / static_cast<double>(hw));
}

__global__ void global_avg_bwd_k(const float* dy, float* dx, int64_t nc, int64_t hw) {
    const float inv = 1.0f / static_cast<float>(hw);
    FSAD_GRID_LOOP(j, nc * hw) dx[j] = dy[j / hw] * inv;
}

Geo geo(const Tensor& x, const Tensor& y, const Pool2dParams& p) {
    return {x.dim(0) * x.dim(1), x.dim(2), x.dim(3), y.dim(2), y.dim(3), p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w};
}
cudaStream_t st(const Tensor& t) { return context(t.device().index).stream; }

}  // namespace

// launches kernel<uint32_t> when the n indices fit in 31 bits, kernel<int64_t> otherwise
#define FSAD_LAUNCH_INDEXED(kernel, n, stream, ...)                                                      \
    do {                                                                                                 \
        if ((n) < 0x7fffffffLL)                                                                          \
            kernel<uint32_t><<<blocks_for(n), kThreads, 0, stream>>>(__VA_ARGS__, static_cast<uint32_t>(n)); \
        else                                                                                             \
            kernel<int64_t><<<blocks_for(n), kThreads, 0, stream>>>(__VA_ARGS__, static_cast<int64_t>(n));   \
        FSAD_CUDA_LAUNCH_CHECK();                                                                        \
    } while (0)

void maxpool2d_forward(const Tensor& x, const Pool2dParams& p, const Tensor& y) {
    if (y.numel() == 0) return;
    FSAD_LAUNCH_INDEXED(maxpool_fwd_k, y.numel(), st(x), x.data(), y.data(), geo(x, y, p));
}
void maxpool2d_backward(const Tensor& x, const Tensor& dy, const Pool2dParams& p, const Tensor& dx) {
    if (dx.numel() == 0) return;
    FSAD_LAUNCH_INDEXED(maxpool_bwd_k, dx.numel(), st(x), x.data(), dy.data(), dx.data(), geo(x, dy, p));
}
void avgpool2d_forward(const Tensor& x, const Pool2dParams& p, const Tensor& y) {
    if (y.numel() == 0) return;
    FSAD_LAUNCH_INDEXED(avgpool_fwd_k, y.numel(), st(x), x.data(), y.data(), geo(x, y, p));
}
void avgpool2d_backward(const Tensor& dy, const Pool2dParams& p, const Tensor& dx) {
    if (dx.numel() == 0) return;
    FSAD_LAUNCH_INDEXED(avgpool_bwd_k, dx.numel(), st(dy), dy.data(), dx.data(), geo(dx, dy, p));
}
void global_avgpool_forward(const Tensor& x, const Tensor& y) {
    const int64_t nc = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
    if (nc == 0) return;
    global_avg_fwd_k<<<blocks_for(nc * 32), kThreads, 0, st(x)>>>(x.data(), y.data(), nc, hw);
    FSAD_CUDA_LAUNCH_CHECK();
}
void global_avgpool_backward(const Tensor& dy, const Tensor& dx) {
    const int64_t nc = dx.dim(0) * dx.dim(1), hw = dx.dim(2) * dx.dim(3);
    if (nc * hw == 0) return;
    global_avg_bwd_k<<<blocks_for(nc * hw), kThreads, 0, st(dy)>>>(dy.data(), dx.data(), nc, hw);
    FSAD_CUDA_LAUNCH_CHECK();
}

}  // namespace fsad::cuda
