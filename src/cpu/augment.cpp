// The image-set kernels on the CPU (ops.hpp "image sets"): the fine-tuning's views, many images
// per call, each with its own parameters. Every value comes from the same detail/math.hpp function
// as imgproc's per-image transform it batches:
//
//   crop_resize_images  y_j[c, y, x] = crop_at(src_image(j)[c], crop_map(job j), y', x'), with
//                       y' = out_h - 1 - y under a vertical flip, x' likewise
//   rotate_images       y_i[c, y, x] = rotate_at(x_i[c], rotate_map(h, w, degrees_i), y, x)
//   colour_images       y_i = colour_pixel(op_i) of each pixel (contrast: around the mean luma)
//   blur_images         along x, then along y, reflect101_index borders, float sums
//   paste_images        dst_i[c, dy + y, dx + x] = v wherever canvas_at(job i) covers (y, x)
//   imagenet_normalize  y[n, c] = (x[n, c] - mean_c) / std_c
#include <vector>

#include "fsad/detail/math.hpp"
#include "kernels.hpp"

namespace fsad::cpu {
namespace {
const float kMean[3] = {0.485f, 0.456f, 0.406f}, kStd[3] = {0.229f, 0.224f, 0.225f};
}

void crop_resize_images(const Tensor& src, const std::vector<ops::PackedImage>& images, const std::vector<ops::CropJob>& jobs,
                        const std::vector<ops::PackedImage>& out_images, const Tensor& y) {
    const int64_t n = static_cast<int64_t>(jobs.size());
#pragma omp parallel for schedule(dynamic)
    for (int64_t j = 0; j < n; ++j) {
        const ops::CropJob& c = jobs[static_cast<size_t>(j)];
        const ops::PackedImage& in = images[static_cast<size_t>(c.image)];
        const ops::PackedImage& out = out_images[static_cast<size_t>(j)];
        const math::CropMap m = math::crop_map(c.y0, c.x0, c.h, c.w, out.h, out.w);
        for (int64_t ch = 0; ch < 3; ++ch) {
            const float* p = src.data() + in.offset + ch * in.h * in.w;
            float* o = y.data() + out.offset + ch * out.h * out.w;
            for (int64_t r = 0; r < out.h; ++r)
                for (int64_t x = 0; x < out.w; ++x)
                    o[r * out.w + x] = math::crop_at(p, in.h, in.w, m, c.vflip ? out.h - 1 - r : r, c.hflip ? out.w - 1 - x : x);
        }
    }
}

void rotate_images(const Tensor& x, const std::vector<ops::PackedImage>& images, const std::vector<float>& degrees,
                   const Tensor& y) {
    const int64_t n = static_cast<int64_t>(images.size());
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
        const ops::PackedImage& im = images[static_cast<size_t>(i)];
        const math::RotateMap m = math::rotate_map(im.h, im.w, degrees[static_cast<size_t>(i)]);
        for (int64_t ch = 0; ch < 3; ++ch) {
            const float* p = x.data() + im.offset + ch * im.h * im.w;
            float* o = y.data() + im.offset + ch * im.h * im.w;
            for (int64_t r = 0; r < im.h; ++r)
                for (int64_t c = 0; c < im.w; ++c) o[r * im.w + c] = math::rotate_at(p, im.h, im.w, m, r, c);
        }
    }
}

void colour_images(const Tensor& x, const std::vector<ops::PackedImage>& images, const std::vector<ops::ColourOp>& ops,
                   const Tensor& y) {
    const int64_t n = static_cast<int64_t>(images.size());
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
        const ops::PackedImage& im = images[static_cast<size_t>(i)];
        const ops::ColourOp& op = ops[static_cast<size_t>(i)];
        const int64_t hw = im.h * im.w;
        const float* p = x.data() + im.offset;
        float* o = y.data() + im.offset;
        double mean = 0;
        if (op.kind == math::Colour::Contrast) {
            for (int64_t k = 0; k < hw; ++k) mean += math::gray601(p[k], p[hw + k], p[2 * hw + k]);
            mean /= static_cast<double>(hw);
        }
        for (int64_t k = 0; k < hw; ++k) {
            float r = p[k], g = p[hw + k], b = p[2 * hw + k];
            math::colour_pixel(op.kind, op.factor, mean, r, g, b);
            o[k] = r, o[hw + k] = g, o[2 * hw + k] = b;
        }
    }
}

void blur_images(const Tensor& x, const std::vector<ops::PackedImage>& images, const std::vector<float>& taps,
                 const std::vector<int64_t>& starts, const Tensor& y) {
    const int64_t n = static_cast<int64_t>(images.size());
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
        const ops::PackedImage& im = images[static_cast<size_t>(i)];
        const int64_t H = im.h, W = im.w, len = starts[static_cast<size_t>(i) + 1] - starts[static_cast<size_t>(i)];
        const float* p = x.data() + im.offset;
        float* o = y.data() + im.offset;
        if (len == 0) {
            std::copy(p, p + 3 * H * W, o);
            continue;
        }
        const float* k = taps.data() + starts[static_cast<size_t>(i)];
        const int64_t rad = len / 2;
        std::vector<float> t(static_cast<size_t>(H * W));
        for (int64_t ch = 0; ch < 3; ++ch) {
            const float* pc = p + ch * H * W;
            float* oc = o + ch * H * W;
            for (int64_t r = 0; r < H; ++r)
                for (int64_t c = 0; c < W; ++c) {
                    float s = 0;
                    for (int64_t d = -rad; d <= rad; ++d) s += k[d + rad] * pc[r * W + math::reflect101_index(c + d, W)];
                    t[static_cast<size_t>(r * W + c)] = s;
                }
            for (int64_t r = 0; r < H; ++r)
                for (int64_t c = 0; c < W; ++c) {
                    float s = 0;
                    for (int64_t d = -rad; d <= rad; ++d) s += k[d + rad] * t[static_cast<size_t>(math::reflect101_index(r + d, H) * W + c)];
                    oc[r * W + c] = s;
                }
        }
    }
}

void paste_images(const Tensor& dst, const std::vector<ops::PackedImage>& dst_images, const Tensor& patches,
                  const std::vector<ops::PackedImage>& patch_images, const std::vector<ops::PasteJob>& jobs) {
    const int64_t n = static_cast<int64_t>(dst_images.size());
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
        const ops::PasteJob& j = jobs[static_cast<size_t>(i)];
        if (j.patch < 0) continue;
        const ops::PackedImage& d = dst_images[static_cast<size_t>(i)];
        const ops::PackedImage& pi = patch_images[static_cast<size_t>(j.patch)];
        const math::RotateMap m = math::rotate_map(j.canvas_h, j.canvas_w, j.degrees);
        for (int64_t ch = 0; ch < 3; ++ch) {
            const float* p = patches.data() + pi.offset + ch * pi.h * pi.w;
            float* o = dst.data() + d.offset + ch * d.h * d.w;
            for (int64_t r = 0; r < j.canvas_h; ++r)
                for (int64_t c = 0; c < j.canvas_w; ++c) {
                    const int64_t ty = j.dy + r, tx = j.dx + c;
                    if (ty < 0 || ty >= d.h || tx < 0 || tx >= d.w) continue;
                    float v;
                    if (math::canvas_at(p, pi.h, pi.w, j.canvas_h, j.canvas_w, j.oy, j.ox, j.rotate, m, r, c, v)) o[ty * d.w + tx] = v;
                }
        }
    }
}

void imagenet_normalize(const Tensor& x, int64_t n, int64_t hw, const Tensor& y) {
#pragma omp parallel for schedule(static) collapse(2)
    for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < 3; ++c) {
            const float* p = x.data() + (i * 3 + c) * hw;
            float* o = y.data() + (i * 3 + c) * hw;
            for (int64_t k = 0; k < hw; ++k) o[k] = (p[k] - kMean[c]) / kStd[c];
        }
}

}  // namespace fsad::cpu
