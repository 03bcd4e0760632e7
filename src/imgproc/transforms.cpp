// Image processing on RGB images [3,H,W] in [0,1] (torchvision.transforms.functional's maths):
// crops with resizing, rotation, flips, colour adjustments, grayscale, Gaussian blur, ImageNet
// normalisation, the heat-map overlay. Used by the method's augmentations (method/augment.cpp),
// the dataset corruptions (data/) and the detector.
#include "fsad/imgproc/transforms.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "fsad/detail/math.hpp"

namespace fsad::imgproc {
namespace {

using math::clamp01;

float gray_of(const float* p, int64_t hw, int64_t i) { return math::gray601(p[i], p[hw + i], p[2 * hw + i]); }

// One of math::colour_pixel's per-pixel transforms over the whole image.
Tensor colour(const Tensor& img, math::Colour kind, float f, double mean) {
    const int64_t hw = img.dim(1) * img.dim(2);
    Tensor out = Tensor::empty(img.shape());
    const float* p = img.data();
    float* o = out.data();
    for (int64_t i = 0; i < hw; ++i) {
        float r = p[i], g = p[hw + i], b = p[2 * hw + i];
        math::colour_pixel(kind, f, mean, r, g, b);
        o[i] = r, o[hw + i] = g, o[2 * hw + i] = b;
    }
    return out;
}

}  // namespace

void check_rgb(const Tensor& img, const char* what) {
    FSAD_CHECK(img.defined() && img.ndim() == 3 && img.dim(0) == 3 && img.dim(1) > 0 && img.dim(2) > 0, what,
               ": expected an RGB image [3,H,W], got ", img.defined() ? img.shape().str() : std::string("undefined"));
}

Tensor crop_resize(const Tensor& img, double y0, double x0, double h, double w, int64_t out_h, int64_t out_w) {
    check_rgb(img, "crop_resize");
    FSAD_CHECK(h > 0 && w > 0 && out_h > 0 && out_w > 0, "crop_resize: empty crop or output");
    const int64_t H = img.dim(1), W = img.dim(2);
    Tensor out = Tensor::empty(Shape{3, out_h, out_w});
    const math::CropMap m = math::crop_map(y0, x0, h, w, out_h, out_w);
    for (int64_t c = 0; c < 3; ++c) {
        const float* p = img.data() + c * H * W;
        for (int64_t y = 0; y < out_h; ++y)
            for (int64_t x = 0; x < out_w; ++x) out.data()[(c * out_h + y) * out_w + x] = math::crop_at(p, H, W, m, y, x);
    }
    return out;
}

Tensor rotate(const Tensor& img, float degrees) {
    check_rgb(img, "rotate");
    const int64_t H = img.dim(1), W = img.dim(2);
    const math::RotateMap m = math::rotate_map(H, W, degrees);
    Tensor out = Tensor::empty(img.shape());
    for (int64_t c = 0; c < 3; ++c) {
        const float* p = img.data() + c * H * W;
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) out.data()[(c * H + y) * W + x] = math::rotate_at(p, H, W, m, y, x);
    }
    return out;
}

Tensor flip(const Tensor& img, bool horizontal) {
    check_rgb(img, "flip");
    const int64_t H = img.dim(1), W = img.dim(2);
    Tensor out = Tensor::empty(img.shape());
    for (int64_t c = 0; c < 3; ++c)
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x)
                out.data()[(c * H + y) * W + x] =
                    horizontal ? img.data()[(c * H + y) * W + (W - 1 - x)] : img.data()[(c * H + (H - 1 - y)) * W + x];
    return out;
}

Tensor adjust_brightness(const Tensor& img, float f) {
    check_rgb(img, "adjust_brightness");
    return colour(img, math::Colour::Brightness, f, 0);
}

Tensor adjust_contrast(const Tensor& img, float f) {
    check_rgb(img, "adjust_contrast");
    const int64_t hw = img.dim(1) * img.dim(2);
    double m = 0;
    for (int64_t i = 0; i < hw; ++i) m += gray_of(img.data(), hw, i);
    return colour(img, math::Colour::Contrast, f, m / static_cast<double>(hw));
}

Tensor adjust_saturation(const Tensor& img, float f) {
    check_rgb(img, "adjust_saturation");
    return colour(img, math::Colour::Saturation, f, 0);
}

Tensor adjust_hue(const Tensor& img, float shift) {
    check_rgb(img, "adjust_hue");
    FSAD_CHECK(shift >= -0.5f && shift <= 0.5f, "adjust_hue: shift ", shift, " outside [-0.5, 0.5]");
    return colour(img, math::Colour::Hue, shift, 0);
}

Tensor to_grayscale(const Tensor& img) {
    check_rgb(img, "to_grayscale");
    return colour(img, math::Colour::Grayscale, 0, 0);
}

std::vector<float> gaussian_taps(float sigma) {
    FSAD_CHECK(sigma > 0, "gaussian_blur: sigma must be positive, got ", sigma);
    const int64_t r = static_cast<int64_t>(std::ceil(3 * sigma));
    std::vector<float> k(static_cast<size_t>(2 * r + 1));
    float sum = 0;
    for (int64_t i = -r; i <= r; ++i) sum += k[static_cast<size_t>(i + r)] = std::exp(-0.5f * static_cast<float>(i * i) / (sigma * sigma));
    for (auto& v : k) v /= sum;
    return k;
}

Tensor gaussian_blur(const Tensor& img, float sigma) {
    check_rgb(img, "gaussian_blur");
    const std::vector<float> k = gaussian_taps(sigma);
    const int64_t H = img.dim(1), W = img.dim(2), r = static_cast<int64_t>(k.size() / 2);
    Tensor tmp = Tensor::empty(img.shape()), out = Tensor::empty(img.shape());
    for (int64_t c = 0; c < 3; ++c) {
        const float* p = img.data() + c * H * W;
        float* t = tmp.data() + c * H * W;
        float* o = out.data() + c * H * W;
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                float s = 0;
                for (int64_t i = -r; i <= r; ++i) s += k[static_cast<size_t>(i + r)] * p[y * W + math::reflect101_index(x + i, W)];
                t[y * W + x] = s;
            }
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                float s = 0;
                for (int64_t i = -r; i <= r; ++i) s += k[static_cast<size_t>(i + r)] * t[math::reflect101_index(y + i, H) * W + x];
                o[y * W + x] = s;
            }
    }
    return out;
}

void imagenet_normalize_into(const Tensor& img, float* dst) {
    FSAD_CHECK(img.ndim() == 3 && img.dim(0) == 3, "imagenet_normalize: expected [3,H,W], got ", img.shape().str());
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    const int64_t hw = img.dim(1) * img.dim(2);
    const float* src = img.data();
    for (int64_t k = 0; k < 3; ++k)
        for (int64_t i = 0; i < hw; ++i) dst[k * hw + i] = (src[k * hw + i] - mean[k]) / stdv[k];
}

Tensor imagenet_normalize(const Tensor& img) {
    Tensor out = Tensor::empty(img.shape());
    imagenet_normalize_into(img, out.data());
    return out;
}

Tensor heatmap_overlay(const Tensor& img, const Tensor& map, float lo, float hi) {
    FSAD_CHECK(img.ndim() == 3 && img.dim(0) == 3 && map.ndim() == 2 && map.dim(0) == img.dim(1) && map.dim(1) == img.dim(2),
               "heatmap_overlay: needs img [3,H,W] and map [H,W] of the same size");
    FSAD_CHECK(hi > lo, "heatmap_overlay: hi must exceed lo");
    const int64_t hw = map.numel();
    Tensor out = Tensor::empty(img.shape());
    for (int64_t i = 0; i < hw; ++i) {
        const float t = std::clamp((map.data()[i] - lo) / (hi - lo), 0.0f, 1.0f);
        const float rgb[3] = {std::clamp(1.5f - std::fabs(4 * t - 3), 0.0f, 1.0f), std::clamp(1.5f - std::fabs(4 * t - 2), 0.0f, 1.0f),
                              std::clamp(1.5f - std::fabs(4 * t - 1), 0.0f, 1.0f)};
        for (int c = 0; c < 3; ++c) out.data()[c * hw + i] = 0.5f * img.data()[c * hw + i] + 0.5f * rgb[c];
    }
    return out;
}

}  // namespace fsad::imgproc
