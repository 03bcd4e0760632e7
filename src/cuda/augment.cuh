// The image-set kernels on the GPU (ops.hpp "image sets"; src/cpu/augment.cpp states what each
// computes, through the same detail/math.hpp functions) and their launches. A grid's y index is
// the image, its x blocks stride over that image's values. The per-image parameters (and the
// rotations' sines and cosines, computed on the host as the CPU does) are copied to the device by
// augment.cu. Built by nvcc into the backend and by the host compiler into the CPU tests (SIMT
// emulator, see device.cuh).
#pragma once
#include <cmath>

#include "device.cuh"
#include "fsad/core/ops.hpp"
#include "fsad/detail/math.hpp"

namespace fsad::cuda {
inline namespace FSAD_KERNEL_ABI {
namespace augment {

using ops::ColourOp;
using ops::CropJob;
using ops::PackedImage;
using ops::PasteJob;

// the values of image blockIdx.y (n of them), strided over the grid's x blocks
#define FSAD_IMAGE_LOOP(t, n) \
    for (uint32_t t = blockIdx.x * blockDim.x + threadIdx.x; t < static_cast<uint32_t>(n); t += blockDim.x * gridDim.x)

__global__ void crop_k(const float* src, const PackedImage* in, const CropJob* jobs, const PackedImage* out, float* y) {
    const CropJob c = jobs[blockIdx.y];
    const PackedImage s = in[c.image], o = out[blockIdx.y];
    const math::CropMap m = math::crop_map(c.y0, c.x0, c.h, c.w, o.h, o.w);
    const uint32_t plane = static_cast<uint32_t>(o.h * o.w), ow = static_cast<uint32_t>(o.w);
    FSAD_IMAGE_LOOP(t, 3 * plane) {
        const uint32_t ch = t / plane, rem = t - ch * plane, r = rem / ow, x = rem - r * ow;
        y[o.offset + t] = math::crop_at(src + s.offset + static_cast<int64_t>(ch) * s.h * s.w, s.h, s.w, m,
                                        c.vflip ? o.h - 1 - r : r, c.hflip ? o.w - 1 - x : x);
    }
}

__global__ void rotate_k(const float* x, const PackedImage* images, const math::RotateMap* maps, float* y) {
    const PackedImage im = images[blockIdx.y];
    const math::RotateMap m = maps[blockIdx.y];
    const uint32_t plane = static_cast<uint32_t>(im.h * im.w), w = static_cast<uint32_t>(im.w);
    FSAD_IMAGE_LOOP(t, 3 * plane) {
        const uint32_t ch = t / plane, rem = t - ch * plane, r = rem / w, c = rem - r * w;
        y[im.offset + t] = math::rotate_at(x + im.offset + static_cast<int64_t>(ch) * plane, im.h, im.w, m, r, c);
    }
}

// one block per image: its mean luma (contrast only)
__global__ void mean_luma_k(const float* x, const PackedImage* images, const ColourOp* ops, double* mean) {
    const PackedImage im = images[blockIdx.x];
    if (ops[blockIdx.x].kind != math::Colour::Contrast) return;
    const int64_t hw = im.h * im.w;
    const float* p = x + im.offset;
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < hw; k += blockDim.x) s += math::gray601(p[k], p[hw + k], p[2 * hw + k]);
    s = block_sum(s);
    if (threadIdx.x == 0) mean[blockIdx.x] = s / static_cast<double>(hw);
}

__global__ void colour_k(const float* x, const PackedImage* images, const ColourOp* ops, const double* mean, float* y) {
    const PackedImage im = images[blockIdx.y];
    const ColourOp op = ops[blockIdx.y];
    const double m = op.kind == math::Colour::Contrast ? mean[blockIdx.y] : 0.0;
    const uint32_t hw = static_cast<uint32_t>(im.h * im.w);
    const float* p = x + im.offset;
    float* o = y + im.offset;
    FSAD_IMAGE_LOOP(k, hw) {
        float r = p[k], g = p[hw + k], b = p[2 * hw + k];
        math::colour_pixel(op.kind, op.factor, m, r, g, b);
        o[k] = r, o[hw + k] = g, o[2 * hw + k] = b;
    }
}

// one pass of the separable blur (along x, then along y); an image without taps is copied
__global__ void blur_pass_k(const float* x, const PackedImage* images, const float* taps, const int64_t* starts, bool along_x,
                            float* y) {
    const PackedImage im = images[blockIdx.y];
    const int64_t len = starts[blockIdx.y + 1] - starts[blockIdx.y], rad = len / 2;
    const float* k = taps + starts[blockIdx.y];
    const uint32_t plane = static_cast<uint32_t>(im.h * im.w), w = static_cast<uint32_t>(im.w);
    FSAD_IMAGE_LOOP(t, 3 * plane) {
        const float* p = x + im.offset;
        if (len == 0) {
            y[im.offset + t] = p[t];
            continue;
        }
        const uint32_t ch = t / plane, rem = t - ch * plane, r = rem / w, c = rem - r * w;
        const float* pc = p + static_cast<int64_t>(ch) * plane;
        float s = 0;
        if (along_x)
            for (int64_t d = -rad; d <= rad; ++d) s += k[d + rad] * pc[r * w + math::reflect101_index(c + d, im.w)];
        else
            for (int64_t d = -rad; d <= rad; ++d) s += k[d + rad] * pc[math::reflect101_index(r + d, im.h) * w + c];
        y[im.offset + t] = s;
    }
}

__global__ void paste_k(float* dst, const PackedImage* dst_images, const float* patches, const PackedImage* patch_images,
                        const PasteJob* jobs, const math::RotateMap* maps) {
    const PasteJob j = jobs[blockIdx.y];
    if (j.patch < 0) return;
    const PackedImage d = dst_images[blockIdx.y], pi = patch_images[j.patch];
    const math::RotateMap m = maps[blockIdx.y];
    const uint32_t plane = static_cast<uint32_t>(j.canvas_h * j.canvas_w), cw = static_cast<uint32_t>(j.canvas_w);
    FSAD_IMAGE_LOOP(t, 3 * plane) {
        const uint32_t ch = t / plane, rem = t - ch * plane, r = rem / cw, c = rem - r * cw;
        const int64_t ty = j.dy + r, tx = j.dx + c;
        if (ty < 0 || ty >= d.h || tx < 0 || tx >= d.w) continue;
        float v;
        if (math::canvas_at(patches + pi.offset + static_cast<int64_t>(ch) * pi.h * pi.w, pi.h, pi.w, j.canvas_h, j.canvas_w, j.oy,
                            j.ox, j.rotate, m, r, c, v))
            dst[d.offset + static_cast<int64_t>(ch) * d.h * d.w + ty * d.w + tx] = v;
    }
}

template <class I>
__global__ void normalize_k(const float* x, float* y, int64_t hw, I n) {
    FSAD_INDEX_LOOP(I, t, n) {
        const int c = static_cast<int>((t / static_cast<I>(hw)) % 3);
        const float mean = c == 0 ? 0.485f : (c == 1 ? 0.456f : 0.406f), sd = c == 0 ? 0.229f : (c == 1 ? 0.224f : 0.225f);
        y[t] = (x[t] - mean) / sd;
    }
}

#undef FSAD_IMAGE_LOOP

// A grid over n images of at most `most` values each.
inline dim3 image_grid(int64_t n, int64_t most) {
    return dim3(std::min<unsigned>(blocks_for(most), 1024u), static_cast<unsigned>(n));
}

// The sequences; every pointer is on the device.
template <class Launch>
void crop(Launch& launch, const float* src, const PackedImage* in, const CropJob* jobs, const PackedImage* out, float* y,
          int64_t n, int64_t most) {
    launch(crop_k, image_grid(n, most), kThreads, src, in, jobs, out, y);
}
template <class Launch>
void rotate(Launch& launch, const float* x, const PackedImage* images, const math::RotateMap* maps, float* y, int64_t n,
            int64_t most) {
    launch(rotate_k, image_grid(n, most), kThreads, x, images, maps, y);
}
/// mean: n doubles of scratch (read only for contrast)
template <class Launch>
void colour(Launch& launch, const float* x, const PackedImage* images, const ColourOp* ops, double* mean, float* y, int64_t n,
            int64_t most, bool any_contrast) {
    if (any_contrast) launch(mean_luma_k, static_cast<unsigned>(n), kThreads, x, images, ops, mean);
    launch(colour_k, image_grid(n, most / 3), kThreads, x, images, ops, static_cast<const double*>(mean), y);
}
/// tmp: as many floats as x
template <class Launch>
void blur(Launch& launch, const float* x, const PackedImage* images, const float* taps, const int64_t* starts, float* tmp,
          float* y, int64_t n, int64_t most) {
    launch(blur_pass_k, image_grid(n, most), kThreads, x, images, taps, starts, true, tmp);
    launch(blur_pass_k, image_grid(n, most), kThreads, static_cast<const float*>(tmp), images, taps, starts, false, y);
}
template <class Launch>
void paste(Launch& launch, float* dst, const PackedImage* dst_images, const float* patches, const PackedImage* patch_images,
           const PasteJob* jobs, const math::RotateMap* maps, int64_t n, int64_t most) {
    launch(paste_k, image_grid(n, most), kThreads, dst, dst_images, patches, patch_images, jobs, maps);
}
template <class Launch>
void normalize(Launch& launch, const float* x, float* y, int64_t n, int64_t hw) {
    launch_indexed(launch, normalize_k<uint32_t>, normalize_k<int64_t>, n * 3 * hw, x, y, hw);
}

}  // namespace augment
}  // namespace FSAD_KERNEL_ABI
}  // namespace fsad::cuda
