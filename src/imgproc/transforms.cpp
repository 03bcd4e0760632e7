// Image processing on RGB images [3,H,W] in [0,1] (torchvision.transforms.functional's maths):
// crops with resizing, rotation, flips, colour adjustments, grayscale, Gaussian blur, ImageNet
// normalisation, the heat-map overlay. Used by the method's augmentations (method/augment.cpp),
// the dataset corruptions (data/) and the detector.
#include "fsad/imgproc/transforms.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace fsad::imgproc {
namespace {

float clamp01(float v) { return std::min(1.0f, std::max(0.0f, v)); }

// bilinear sample of channel plane p (h x w) at (y, x) in pixel-centre coordinates; 0 outside
float sample(const float* p, int64_t h, int64_t w, double y, double x) {
    const double fy = std::floor(y), fx = std::floor(x);
    const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
    const double ly = y - fy, lx = x - fx;
    auto at = [&](int64_t r, int64_t c) -> double { return (r < 0 || r >= h || c < 0 || c >= w) ? 0.0 : p[r * w + c]; };
    return static_cast<float>((1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x0 + 1)) +
                              ly * ((1 - lx) * at(y0 + 1, x0) + lx * at(y0 + 1, x0 + 1)));
}

Tensor map_pixels(const Tensor& img, float (*f)(float, float), float arg) {
    Tensor out = Tensor::empty(img.shape());
    for (int64_t i = 0; i < img.numel(); ++i) out.data()[i] = f(img.data()[i], arg);
    return out;
}

float gray_of(const float* p, int64_t hw, int64_t i) {
    return 0.299f * p[i] + 0.587f * p[hw + i] + 0.114f * p[2 * hw + i];  // ITU-R 601, as torchvision
}

void rgb_to_hsv(float r, float g, float b, float& h, float& s, float& v) {
    const float mx = std::max({r, g, b}), mn = std::min({r, g, b}), d = mx - mn;
    v = mx;
    s = mx > 0 ? d / mx : 0.0f;
    if (d <= 0) {
        h = 0;
        return;
    }
    if (mx == r) h = (g - b) / d;
    else if (mx == g) h = 2.0f + (b - r) / d;
    else h = 4.0f + (r - g) / d;
    h /= 6.0f;
    h -= std::floor(h);
}

void hsv_to_rgb(float h, float s, float v, float& r, float& g, float& b) {
    h = (h - std::floor(h)) * 6.0f;
    const int i = static_cast<int>(h) % 6;
    const float f = h - std::floor(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch (i) {
        case 0: r = v, g = t, b = p; break;
        case 1: r = q, g = v, b = p; break;
        case 2: r = p, g = v, b = t; break;
        case 3: r = p, g = q, b = v; break;
        case 4: r = t, g = p, b = v; break;
        default: r = v, g = p, b = q; break;
    }
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
    const double sy = h / static_cast<double>(out_h), sx = w / static_cast<double>(out_w);
    // area-average when shrinking by more than 2x (anti-aliasing), bilinear otherwise
    const int64_t ay = std::max<int64_t>(1, static_cast<int64_t>(std::floor(sy / 2))) ,
                  ax = std::max<int64_t>(1, static_cast<int64_t>(std::floor(sx / 2)));
    for (int64_t c = 0; c < 3; ++c) {
        const float* p = img.data() + c * H * W;
        for (int64_t y = 0; y < out_h; ++y)
            for (int64_t x = 0; x < out_w; ++x) {
                double acc = 0;
                for (int64_t u = 0; u < ay; ++u)
                    for (int64_t v = 0; v < ax; ++v) {
                        const double cy = y0 + (static_cast<double>(y) + (static_cast<double>(u) + 0.5) / static_cast<double>(ay)) * sy - 0.5;
                        const double cx = x0 + (static_cast<double>(x) + (static_cast<double>(v) + 0.5) / static_cast<double>(ax)) * sx - 0.5;
                        // clamp to the image (edge replication) so crops at the border stay bright
                        acc += sample(p, H, W, std::clamp(cy, 0.0, static_cast<double>(H - 1)),
                                      std::clamp(cx, 0.0, static_cast<double>(W - 1)));
                    }
                out.data()[(c * out_h + y) * out_w + x] = static_cast<float>(acc / static_cast<double>(ay * ax));
            }
    }
    return out;
}

Tensor rotate(const Tensor& img, float degrees) {
    check_rgb(img, "rotate");
    const int64_t H = img.dim(1), W = img.dim(2);
    const double a = degrees * std::numbers::pi / 180.0, ca = std::cos(a), sa = std::sin(a);
    const double cy = (static_cast<double>(H) - 1) / 2, cx = (static_cast<double>(W) - 1) / 2;
    Tensor out = Tensor::empty(img.shape());
    for (int64_t c = 0; c < 3; ++c) {
        const float* p = img.data() + c * H * W;
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                // counter-clockwise on screen for a > 0 (torchvision's convention): the source of
                // dest (y, x) is the dest offset rotated back, with y pointing down
                const double dy = static_cast<double>(y) - cy, dx = static_cast<double>(x) - cx;
                const double sy = ca * dy + sa * dx + cy, sx = -sa * dy + ca * dx + cx;
                out.data()[(c * H + y) * W + x] = sample(p, H, W, sy, sx);
            }
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
    return map_pixels(img, [](float v, float k) { return clamp01(v * k); }, f);
}

Tensor adjust_contrast(const Tensor& img, float f) {
    check_rgb(img, "adjust_contrast");
    const int64_t hw = img.dim(1) * img.dim(2);
    double m = 0;
    for (int64_t i = 0; i < hw; ++i) m += gray_of(img.data(), hw, i);
    m /= static_cast<double>(hw);
    Tensor out = Tensor::empty(img.shape());
    for (int64_t i = 0; i < img.numel(); ++i)
        out.data()[i] = clamp01(static_cast<float>(m + (img.data()[i] - m) * f));
    return out;
}

Tensor adjust_saturation(const Tensor& img, float f) {
    check_rgb(img, "adjust_saturation");
    const int64_t hw = img.dim(1) * img.dim(2);
    Tensor out = Tensor::empty(img.shape());
    for (int64_t i = 0; i < hw; ++i) {
        const float g = gray_of(img.data(), hw, i);
        for (int64_t c = 0; c < 3; ++c) out.data()[c * hw + i] = clamp01(g + (img.data()[c * hw + i] - g) * f);
    }
    return out;
}

Tensor adjust_hue(const Tensor& img, float shift) {
    check_rgb(img, "adjust_hue");
    FSAD_CHECK(shift >= -0.5f && shift <= 0.5f, "adjust_hue: shift ", shift, " outside [-0.5, 0.5]");
    const int64_t hw = img.dim(1) * img.dim(2);
    Tensor out = Tensor::empty(img.shape());
    const float* p = img.data();
    for (int64_t i = 0; i < hw; ++i) {
        float h, s, v, r, g, b;
        rgb_to_hsv(p[i], p[hw + i], p[2 * hw + i], h, s, v);
        hsv_to_rgb(h + shift, s, v, r, g, b);
        out.data()[i] = r;
        out.data()[hw + i] = g;
        out.data()[2 * hw + i] = b;
    }
    return out;
}

Tensor to_grayscale(const Tensor& img) {
    check_rgb(img, "to_grayscale");
    const int64_t hw = img.dim(1) * img.dim(2);
    Tensor out = Tensor::empty(img.shape());
    for (int64_t i = 0; i < hw; ++i) {
        const float g = gray_of(img.data(), hw, i);
        for (int64_t c = 0; c < 3; ++c) out.data()[c * hw + i] = g;
    }
    return out;
}

Tensor gaussian_blur(const Tensor& img, float sigma) {
    check_rgb(img, "gaussian_blur");
    FSAD_CHECK(sigma > 0, "gaussian_blur: sigma must be positive, got ", sigma);
    const int64_t H = img.dim(1), W = img.dim(2);
    const int64_t r = static_cast<int64_t>(std::ceil(3 * sigma));
    std::vector<float> k(static_cast<size_t>(2 * r + 1));
    float sum = 0;
    for (int64_t i = -r; i <= r; ++i) sum += k[static_cast<size_t>(i + r)] = std::exp(-0.5f * static_cast<float>(i * i) / (sigma * sigma));
    for (auto& v : k) v /= sum;
    auto reflect = [](int64_t i, int64_t n) {
        if (n == 1) return int64_t(0);
        while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
        return i;
    };
    Tensor tmp = Tensor::empty(img.shape()), out = Tensor::empty(img.shape());
    for (int64_t c = 0; c < 3; ++c) {
        const float* p = img.data() + c * H * W;
        float* t = tmp.data() + c * H * W;
        float* o = out.data() + c * H * W;
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                float s = 0;
                for (int64_t i = -r; i <= r; ++i) s += k[static_cast<size_t>(i + r)] * p[y * W + reflect(x + i, W)];
                t[y * W + x] = s;
            }
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                float s = 0;
                for (int64_t i = -r; i <= r; ++i) s += k[static_cast<size_t>(i + r)] * t[reflect(y + i, H) * W + x];
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
