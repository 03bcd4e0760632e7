// Pooling kernels with the CPU's semantics (src/cpu/pool.cpp): max pooling treats padding as
// -inf and routes the gradient to the first maximum of each window; average pooling divides by
// kh*kw (padding counted). Backward kernels gather over the windows that cover an input element
// (one thread per input element, no atomics: deterministic). Built by nvcc into the backend
// (pool.cu) and by the host compiler into the CPU tests (SIMT emulator, see device.cuh).
#pragma once
#include <cfloat>
#include <cmath>

#include "device.cuh"

namespace fsad::cuda {
inline namespace FSAD_KERNEL_ABI {
namespace pool {

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

// The input window of output j: plane k, rows [h0, h1), columns [w0, w1) (clipped)
struct Window {
    int64_t k, h0, h1, w0, w1;
};
template <class I>
__device__ inline Window window_of(I j, const Geo& g) {
    Window r;
    int64_t oh, ow;
    split_index(j, g.ho, g.wo, r.k, oh, ow);
    window(oh, g.sh, g.ph, g.kh, g.h, r.h0, r.h1);
    window(ow, g.sw, g.pw, g.kw, g.w, r.w0, r.w1);
    return r;
}
// The outputs whose windows cover input j: plane k, input row ih and column iw, output rows
// [oh0, oh1) and columns [ow0, ow1)
struct Cover {
    int64_t k, ih, iw, oh0, oh1, ow0, ow1;
};
template <class I>
__device__ inline Cover cover_of(I j, const Geo& g) {
    Cover r;
    split_index(j, g.h, g.w, r.k, r.ih, r.iw);
    covering(r.ih, g.sh, g.ph, g.kh, g.ho, r.oh0, r.oh1);
    covering(r.iw, g.sw, g.pw, g.kw, g.wo, r.ow0, r.ow1);
    return r;
}

// sum of rows [r0, r1) x columns [c0, c1) of a plane with rows of ld values
__device__ inline float rect_sum(const float* p, int64_t ld, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    float s = 0.0f;
    for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) s += p[r * ld + c];
    return s;
}

template <class I>
__global__ void maxpool_fwd_k(const float* x, float* y, Geo g, I total) {
    FSAD_INDEX_LOOP(I, j, total) {
        const Window win = window_of(j, g);
        const float* xc = x + win.k * g.h * g.w;
        float best = -FLT_MAX;
        bool any = false;
        for (int64_t ih = win.h0; ih < win.h1; ++ih)
            for (int64_t iw = win.w0; iw < win.w1; ++iw) {
                const float v = xc[ih * g.w + iw];
                if (!any || v > best) best = v;
                any = true;
            }
        y[j] = any ? best : -INFINITY;
    }
}

// The backward in two passes: each window's first maximum (as an index within its plane, one
// thread per output), then each input element gathers dy from the covering windows whose maximum
// it is. Up to (kh/sh)(kw/sw) index reads per input instead of a window scan per covering output
// (ResNet's 3x3 stride-2 stem pool: 4 reads against 36).
template <class I>
__global__ void maxpool_argmax_k(const float* x, int32_t* arg, Geo g, I total) {
    FSAD_INDEX_LOOP(I, j, total) {
        int64_t k, oh, ow;
        split_index(j, g.ho, g.wo, k, oh, ow);
        arg[j] = static_cast<int32_t>(argmax_of(x + k * g.h * g.w, g, oh, ow));
    }
}

template <class I>
__global__ void maxpool_bwd_k(const int32_t* arg, const float* dy, float* dx, Geo g, I total) {
    FSAD_INDEX_LOOP(I, j, total) {
        const Cover cv = cover_of(j, g);
        const int32_t* ac = arg + cv.k * g.ho * g.wo;
        const float* dc = dy + cv.k * g.ho * g.wo;
        const int32_t self = static_cast<int32_t>(cv.ih * g.w + cv.iw);
        float s = 0.0f;
        for (int64_t oh = cv.oh0; oh < cv.oh1; ++oh)
            for (int64_t ow = cv.ow0; ow < cv.ow1; ++ow)
                if (ac[oh * g.wo + ow] == self) s += dc[oh * g.wo + ow];
        dx[j] = s;
    }
}

template <class I>
__global__ void avgpool_fwd_k(const float* x, float* y, Geo g, I total) {
    const float inv = 1.0f / static_cast<float>(g.kh * g.kw);
    FSAD_INDEX_LOOP(I, j, total) {
        const Window win = window_of(j, g);
        y[j] = rect_sum(x + win.k * g.h * g.w, g.w, win.h0, win.h1, win.w0, win.w1) * inv;
    }
}

template <class I>
__global__ void avgpool_bwd_k(const float* dy, float* dx, Geo g, I total) {
    const float inv = 1.0f / static_cast<float>(g.kh * g.kw);
    FSAD_INDEX_LOOP(I, j, total) {
        const Cover cv = cover_of(j, g);
        dx[j] = rect_sum(dy + cv.k * g.ho * g.wo, g.wo, cv.oh0, cv.oh1, cv.ow0, cv.ow1) * inv;
    }
}

// one warp per (n, c) plane, warp-stride over the planes (the grid is capped); blockDim.x is a
// multiple of 32, so the lanes of a warp take the same planes and shuffle together
__global__ void global_avg_fwd_k(const float* x, float* y, int64_t nc, int64_t hw) {
    const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
    const int lane = threadIdx.x & 31;
    for (int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; warp < nc; warp += warps) {
        const float* p = x + warp * hw;
        double s = 0.0;
        for (int64_t i = lane; i < hw; i += 32) s += p[i];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
        if (lane == 0) y[warp] = static_cast<float>(s / static_cast<double>(hw));
    }
}

__global__ void global_avg_bwd_k(const float* dy, float* dx, int64_t nc, int64_t hw) {
    const float inv = 1.0f / static_cast<float>(hw);
    FSAD_GRID_LOOP(j, nc * hw) dx[j] = dy[j / hw] * inv;
}

/// The launches of each op (x [nc, h, w], y [nc, ho, wo] in g's terms)
template <class Launch>
void max_forward(Launch& launch, const Geo& g, const float* x, float* y) {
    launch_indexed(launch, maxpool_fwd_k<uint32_t>, maxpool_fwd_k<int64_t>, g.nc * g.ho * g.wo, x, y, g);
}
/// arg: scratch of g.nc * g.ho * g.wo indices (a plane's h w < 2^31)
template <class Launch>
void max_backward(Launch& launch, const Geo& g, const float* x, const float* dy, float* dx, int32_t* arg) {
    launch_indexed(launch, maxpool_argmax_k<uint32_t>, maxpool_argmax_k<int64_t>, g.nc * g.ho * g.wo, x, arg, g);
    launch_indexed(launch, maxpool_bwd_k<uint32_t>, maxpool_bwd_k<int64_t>, g.nc * g.h * g.w, static_cast<const int32_t*>(arg),
                   dy, dx, g);
}
template <class Launch>
void avg_forward(Launch& launch, const Geo& g, const float* x, float* y) {
    launch_indexed(launch, avgpool_fwd_k<uint32_t>, avgpool_fwd_k<int64_t>, g.nc * g.ho * g.wo, x, y, g);
}
template <class Launch>
void avg_backward(Launch& launch, const Geo& g, const float* dy, float* dx) {
    launch_indexed(launch, avgpool_bwd_k<uint32_t>, avgpool_bwd_k<int64_t>, g.nc * g.h * g.w, dy, dx, g);
}
/// x [nc, hw] -> y [nc]: a warp per plane
template <class Launch>
void global_avg_forward(Launch& launch, const float* x, float* y, int64_t nc, int64_t hw) {
    launch(global_avg_fwd_k, blocks_for(nc * 32), kThreads, x, y, nc, hw);
}
template <class Launch>
void global_avg_backward(Launch& launch, const float* dy, float* dx, int64_t nc, int64_t hw) {
    launch(global_avg_bwd_k, blocks_for(nc * hw), kThreads, dy, dx, nc, hw);
}

}  // namespace pool
}  // namespace FSAD_KERNEL_ABI
}  // namespace fsad::cuda
