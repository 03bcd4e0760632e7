// Resizing of [C,H,W] images: bilinear (PyTorch's interpolate), anti-aliased (Pillow's), and the
// short-side resize with a centre crop of test-time preprocessing.
#include "fsad/imgproc/resize.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fsad/core/error.hpp"
#include "fsad/detail/math.hpp"

namespace fsad::imgproc {

Tensor resize_bilinear(const Tensor& img, int64_t oh, int64_t ow) {
    FSAD_CHECK(img.ndim() == 3, "resize_bilinear: expected [C,H,W], got ", img.shape().str());
    FSAD_CHECK(oh > 0 && ow > 0, "resize_bilinear: output size must be positive, got ", oh, "x", ow);
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2);
    FSAD_CHECK(h > 0 && w > 0, "resize_bilinear: empty input ", img.shape().str());
    Tensor out = Tensor::empty(Shape{c, oh, ow});
    const float sy = static_cast<float>(h) / static_cast<float>(oh), sx = static_cast<float>(w) / static_cast<float>(ow);
    for (int64_t y = 0; y < oh; ++y) {
        const math::BilinearTap ty = math::bilinear_tap(y, h, sy);
        for (int64_t x = 0; x < ow; ++x) {
            const math::BilinearTap tx = math::bilinear_tap(x, w, sx);
            for (int64_t k = 0; k < c; ++k) out.data()[(k * oh + y) * ow + x] = math::bilinear_at(img.data() + k * h * w, w, ty, tx);
        }
    }
    return out;
}

namespace {
// One separable pass of Pillow's resampling (src/libImaging/Resample.c, precompute_coeffs):
// output i covers input centre (i + 0.5) * scale, filter support max(scale, 1), triangle
// weights normalised to sum 1.
struct Taps {
    std::vector<int64_t> start;
    std::vector<int64_t> count;
    std::vector<double> w;  // count.size() x max_taps
    int64_t max_taps = 0;
};
Taps taps(int64_t in, int64_t out) {
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    const double fscale = std::max(scale, 1.0), support = fscale;  // bilinear support 1.0
    Taps t;
    t.max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
    t.start.resize(static_cast<size_t>(out));
    t.count.resize(static_cast<size_t>(out));
    t.w.assign(static_cast<size_t>(out * t.max_taps), 0.0);
    for (int64_t i = 0; i < out; ++i) {
        const double centre = (static_cast<double>(i) + 0.5) * scale;
        const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(centre - support + 0.5));
        const int64_t hi = std::min<int64_t>(in, static_cast<int64_t>(centre + support + 0.5));
        double sum = 0;
        int64_t n = 0;
        for (int64_t j = lo; j < hi && n < t.max_taps; ++j, ++n) {
            const double x = (static_cast<double>(j) - centre + 0.5) / fscale;
            const double v = std::max(0.0, 1.0 - std::fabs(x));
            t.w[static_cast<size_t>(i * t.max_taps + n)] = v;
            sum += v;
        }
        for (int64_t k = 0; k < n; ++k)
            if (sum != 0) t.w[static_cast<size_t>(i * t.max_taps + k)] /= sum;
        t.start[static_cast<size_t>(i)] = lo;
        t.count[static_cast<size_t>(i)] = n;
    }
    return t;
}
}  // namespace

Tensor resize_antialias(const Tensor& img, int64_t oh, int64_t ow) {
    FSAD_CHECK(img.ndim() == 3, "resize_antialias: expected [C,H,W], got ", img.shape().str());
    FSAD_CHECK(oh > 0 && ow > 0, "resize_antialias: output size must be positive, got ", oh, "x", ow);
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2);
    FSAD_CHECK(h > 0 && w > 0, "resize_antialias: empty input ", img.shape().str());
    if (oh == h && ow == w) return img.clone();  // the filter at scale 1 is the identity (1 ms at 224 px)
    const Taps tx = taps(w, ow), ty = taps(h, oh);
    Tensor mid = Tensor::empty(Shape{c, h, ow}), out = Tensor::empty(Shape{c, oh, ow});
    for (int64_t k = 0; k < c; ++k)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < ow; ++x) {
                double s = 0;
                const float* row = img.data() + (k * h + y) * w + tx.start[static_cast<size_t>(x)];
                for (int64_t n = 0; n < tx.count[static_cast<size_t>(x)]; ++n)
                    s += tx.w[static_cast<size_t>(x * tx.max_taps + n)] * row[n];
                mid.data()[(k * h + y) * ow + x] = static_cast<float>(s);
            }
    for (int64_t k = 0; k < c; ++k)
        for (int64_t y = 0; y < oh; ++y)
            for (int64_t x = 0; x < ow; ++x) {
                double s = 0;
                for (int64_t n = 0; n < ty.count[static_cast<size_t>(y)]; ++n)
                    s += ty.w[static_cast<size_t>(y * ty.max_taps + n)] *
                         mid.data()[(k * h + ty.start[static_cast<size_t>(y)] + n) * ow + x];
                out.data()[(k * oh + y) * ow + x] = static_cast<float>(s);
            }
    return out;
}

Tensor resize_short_center_crop(const Tensor& img, int64_t short_side, int64_t oh, int64_t ow) {
    FSAD_CHECK(img.ndim() == 3 && img.dim(1) > 0 && img.dim(2) > 0, "resize_short_center_crop: expected [C,H,W], got ",
               img.shape().str());
    const int64_t h = img.dim(1), w = img.dim(2);
    const int64_t nh = h <= w ? short_side : std::max<int64_t>(1, std::lround(static_cast<double>(h) * static_cast<double>(short_side) / static_cast<double>(w)));
    const int64_t nw = h <= w ? std::max<int64_t>(1, std::lround(static_cast<double>(w) * static_cast<double>(short_side) / static_cast<double>(h))) : short_side;
    FSAD_CHECK(nh >= oh && nw >= ow, "resize_short_center_crop: crop ", oh, "x", ow, " larger than the resized image ", nh,
               "x", nw);
    Tensor r = resize_antialias(img, nh, nw);
    const int64_t y0 = (nh - oh) / 2, x0 = (nw - ow) / 2;
    Tensor out = Tensor::empty(Shape{img.dim(0), oh, ow});
    for (int64_t k = 0; k < img.dim(0); ++k)
        for (int64_t y = 0; y < oh; ++y)
            std::copy(r.data() + (k * nh + y0 + y) * nw + x0, r.data() + (k * nh + y0 + y) * nw + x0 + ow,
                      out.data() + (k * oh + y) * ow);
    return out;
}

}  // namespace fsad::imgproc
