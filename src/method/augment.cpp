#include "fsad/method/augment.hpp"

#include <algorithm>
#include <cmath>

#include "fsad/imgproc/transforms.hpp"
#include "fsad/io/image.hpp"

namespace fsad::method {
namespace {

using imgproc::check_rgb;
float clamp01(float v) { return std::clamp(v, 0.0f, 1.0f); }

// torchvision's ColorJitter: the four adjustments in a random order, each with a factor drawn
// from [1-x, 1+x] (hue: a shift from [-x, x]).
Tensor colour_jitter(const Tensor& img, float b, float c, float s, float h, Rng& rng) {
    int order[4] = {0, 1, 2, 3};
    std::shuffle(order, order + 4, rng.engine());
    Tensor out = img;
    for (int k : order) {
        if (k == 0 && b > 0) out = adjust_brightness(out, rng.uniform(1 - b, 1 + b));
        if (k == 1 && c > 0) out = adjust_contrast(out, rng.uniform(1 - c, 1 + c));
        if (k == 2 && s > 0) out = adjust_saturation(out, rng.uniform(1 - s, 1 + s));
        if (k == 3 && h > 0) out = adjust_hue(out, rng.uniform(-h, h));
    }
    return out;
}

// Pastes `patch` [3,ph,pw] into img at (y0, x0), where mask (ph x pw, optional) is nonzero.
void paste(Tensor& img, const Tensor& patch, const std::vector<float>* mask, int64_t y0, int64_t x0) {
    const int64_t h = img.dim(1), w = img.dim(2), ph = patch.dim(1), pw = patch.dim(2);
    for (int64_t c = 0; c < 3; ++c)
        for (int64_t y = 0; y < ph; ++y)
            for (int64_t x = 0; x < pw; ++x) {
                const int64_t ty = y0 + y, tx = x0 + x;
                if (ty < 0 || ty >= h || tx < 0 || tx >= w) continue;
                const float m = mask ? (*mask)[static_cast<size_t>(y * pw + x)] : 1.0f;
                if (m <= 0) continue;
                float& dst = img.data()[(c * h + ty) * w + tx];
                dst = (1 - m) * dst + m * patch.data()[(c * ph + y) * pw + x];
            }
}

Tensor cutpaste(const Tensor& img, Rng& rng) {
    const int64_t h = img.dim(1), w = img.dim(2);
    const double area = static_cast<double>(h * w) * rng.uniform(0.02f, 0.15f);
    const double aspect = std::exp(rng.uniform(std::log(0.3f), std::log(1.0f / 0.3f)));
    const int64_t pw = std::clamp<int64_t>(std::lround(std::sqrt(area * aspect)), 1, w);
    const int64_t ph = std::clamp<int64_t>(std::lround(std::sqrt(area / aspect)), 1, h);
    const int64_t sy = rng.integer(0, h - ph), sx = rng.integer(0, w - pw);
    const int64_t dy = rng.integer(0, h - ph), dx = rng.integer(0, w - pw);
    Tensor patch = colour_jitter(crop_resize(img, static_cast<double>(sy), static_cast<double>(sx), static_cast<double>(ph),
                                             static_cast<double>(pw), ph, pw),
                                 0.1f, 0.1f, 0.1f, 0.1f, rng);
    Tensor out = img.clone();
    paste(out, patch, nullptr, dy, dx);
    return out;
}

Tensor scar(const Tensor& img, Rng& rng) {
    const int64_t h = img.dim(1), w = img.dim(2);
    const int64_t sw = std::min<int64_t>(rng.integer(2, 16), w), sl = std::min<int64_t>(rng.integer(10, 25), h);
    const float angle = rng.uniform(-45.0f, 45.0f);
    const int64_t sy = rng.integer(0, h - sl), sx = rng.integer(0, w - sw);
    Tensor patch = colour_jitter(crop_resize(img, static_cast<double>(sy), static_cast<double>(sx), static_cast<double>(sl),
                                             static_cast<double>(sw), sl, sw),
                                 0.1f, 0.1f, 0.1f, 0.1f, rng);
    // rotate the strip inside a square canvas large enough for any angle, with its mask
    const int64_t side = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(sw * sw + sl * sl)))) + 2;
    Tensor canvas = Tensor::zeros(Shape{3, side, side}), mcanvas = Tensor::zeros(Shape{3, side, side});
    Tensor ones = Tensor::full(patch.shape(), 1.0f);
    paste(canvas, patch, nullptr, (side - sl) / 2, (side - sw) / 2);
    paste(mcanvas, ones, nullptr, (side - sl) / 2, (side - sw) / 2);
    Tensor rp = rotate(canvas, angle), rm = rotate(mcanvas, angle);
    std::vector<float> mask(static_cast<size_t>(side * side));
    for (int64_t i = 0; i < side * side; ++i) mask[static_cast<size_t>(i)] = rm.data()[i] > 0.5f ? 1.0f : 0.0f;
    const int64_t dy = rng.integer(-side / 4, std::max<int64_t>(0, h - side + side / 4));
    const int64_t dx = rng.integer(-side / 4, std::max<int64_t>(0, w - side + side / 4));
    Tensor out = img.clone();
    paste(out, rp, &mask, dy, dx);
    return out;
}

}  // namespace

Negative parse_negative(const std::string& s) {
    if (s == "none") return Negative::None;
    if (s == "cutpaste") return Negative::CutPaste;
    if (s == "scar") return Negative::Scar;
    if (s == "union") return Negative::Union;
    if (s == "cifar") return Negative::CifarBlurShift;
    throw Error("unknown negative augmentation '" + s + "' (expected none, cutpaste, scar, union or cifar)");
}

std::string to_string(Negative n) {
    switch (n) {
        case Negative::None: return "none";
        case Negative::CutPaste: return "cutpaste";
        case Negative::Scar: return "scar";
        case Negative::Union: return "union";
        case Negative::CifarBlurShift: return "cifar";
    }
    return "?";
}


Tensor augment(const Tensor& img, const AugmentOptions& o, Rng& rng) {
    check_rgb(img, "augment");
    FSAD_CHECK(o.size > 0, "augment: output size must be positive");
    FSAD_CHECK((o.out_h > 0) == (o.out_w > 0), "augment: out_h and out_w go together");
    const double H = static_cast<double>(img.dim(1)), W = static_cast<double>(img.dim(2)), area = H * W;
    const int64_t oh = o.out_h > 0 ? o.out_h : o.size, ow = o.out_w > 0 ? o.out_w : o.size;
    const double rel = static_cast<double>(ow) / static_cast<double>(oh);  // aspect ratios relative to the output's
    // torchvision's RandomResizedCrop: up to 10 tries, then a centre crop
    double ch = H, cw = W, y0 = 0, x0 = 0;
    bool found = false;
    for (int t = 0; t < 10 && !found; ++t) {
        const double target = area * rng.uniform(o.scale_min, o.scale_max);
        const double ar = rel * std::exp(rng.uniform(std::log(o.ratio_min), std::log(o.ratio_max)));
        const double w = std::round(std::sqrt(target * ar)), h = std::round(std::sqrt(target / ar));
        if (w > 0 && h > 0 && w <= W && h <= H) {
            ch = h;
            cw = w;
            y0 = static_cast<double>(rng.integer(0, static_cast<int64_t>(H - h)));
            x0 = static_cast<double>(rng.integer(0, static_cast<int64_t>(W - w)));
            found = true;
        }
    }
    if (!found) {
        const double ar = W / H;
        if (ar < rel * o.ratio_min) ch = std::round(W / (rel * o.ratio_min));
        else if (ar > rel * o.ratio_max) cw = std::round(H * rel * o.ratio_max);
        y0 = (H - ch) / 2;
        x0 = (W - cw) / 2;
    }
    Tensor out = crop_resize(img, y0, x0, ch, cw, oh, ow);
    if (rng.bernoulli(o.hflip)) out = flip(out, true);
    if (rng.bernoulli(o.vflip)) out = flip(out, false);
    if (o.max_rotation > 0) out = rotate(out, rng.uniform(-o.max_rotation, o.max_rotation));
    if (!o.colour) return out;
    if (rng.bernoulli(o.jitter_p)) out = colour_jitter(out, o.brightness, o.contrast, o.saturation, o.hue, rng);
    if (rng.bernoulli(o.grayscale_p)) out = to_grayscale(out);
    if (rng.bernoulli(o.blur_p)) out = gaussian_blur(out, rng.uniform(o.blur_sigma_min, o.blur_sigma_max));
    return out;
}

Tensor synthetic_defect(const Tensor& img, Rng& rng) {
    check_rgb(img, "synthetic_defect");
    const int64_t kind = rng.integer(0, 2);
    if (kind == 0) return cutpaste(img, rng);
    if (kind == 1) return scar(img, rng);
    const int64_t h = img.dim(1), w = img.dim(2);
    const double area = static_cast<double>(h * w) * rng.uniform(0.01f, 0.06f);
    const double aspect = std::exp(rng.uniform(std::log(0.4f), std::log(2.5f)));
    const double ry = std::sqrt(area / aspect / M_PI), rx = std::sqrt(area * aspect / M_PI);
    const double cy = rng.uniform(0.0f, static_cast<float>(h - 1)), cx = rng.uniform(0.0f, static_cast<float>(w - 1));
    const float shift = (rng.bernoulli(0.5f) ? -1.0f : 1.0f) * rng.uniform(0.25f, 0.5f);
    Tensor out = img.clone();
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
            const double d = std::sqrt(std::pow((static_cast<double>(y) - cy) / ry, 2) + std::pow((static_cast<double>(x) - cx) / rx, 2));
            if (d >= 1.2) continue;
            const float m = d <= 0.8 ? 1.0f : static_cast<float>((1.2 - d) / 0.4);  // soft edge
            const float noise = rng.normal(0.0f, 0.05f);
            for (int64_t c = 0; c < 3; ++c) {
                float& v = out.data()[(c * h + y) * w + x];
                v = clamp01(v + m * (shift + noise));
            }
        }
    return out;
}

Tensor synthetic_corruption(const Tensor& img, Rng& rng) {
    check_rgb(img, "synthetic_corruption");
    if (rng.bernoulli(0.5f)) return negative(img, Negative::CifarBlurShift, rng);
    const float sigma = rng.uniform(0.04f, 0.1f);
    Tensor out = img.clone();
    for (int64_t i = 0; i < out.numel(); ++i) out.data()[i] = clamp01(out.data()[i] + rng.normal(0.0f, sigma));
    return out;
}

Tensor negative(const Tensor& img, Negative kind, Rng& rng) {
    check_rgb(img, "negative");
    switch (kind) {
        case Negative::None: return img;
        case Negative::CutPaste: return cutpaste(img, rng);
        case Negative::Scar: return scar(img, rng);
        case Negative::Union: return rng.bernoulli(0.5f) ? cutpaste(img, rng) : scar(img, rng);
        case Negative::CifarBlurShift: {
            Tensor out = gaussian_blur(img, rng.uniform(0.5f, 1.5f));
            out = adjust_brightness(out, rng.bernoulli(0.5f) ? rng.uniform(0.6f, 0.8f) : rng.uniform(1.2f, 1.4f));
            return adjust_contrast(out, rng.bernoulli(0.5f) ? rng.uniform(0.6f, 0.8f) : rng.uniform(1.2f, 1.4f));
        }
    }
    return img;
}

void write_grid(const std::string& path, const std::vector<Tensor>& images, int64_t cols) {
    FSAD_CHECK(!images.empty() && cols > 0, "write_grid: no images");
    for (const auto& i : images) check_rgb(i, "write_grid");
    const int64_t h = images[0].dim(1), w = images[0].dim(2), gap = 2;
    const int64_t n = static_cast<int64_t>(images.size()), rows = (n + cols - 1) / cols;
    const int64_t gh = rows * h + (rows + 1) * gap, gw = cols * w + (cols + 1) * gap;
    Tensor grid = Tensor::full(Shape{3, gh, gw}, 1.0f);
    for (int64_t k = 0; k < n; ++k) {
        FSAD_CHECK(images[static_cast<size_t>(k)].dim(1) == h && images[static_cast<size_t>(k)].dim(2) == w,
                   "write_grid: images differ in size");
        const int64_t oy = gap + (k / cols) * (h + gap), ox = gap + (k % cols) * (w + gap);
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t y = 0; y < h; ++y)
                for (int64_t x = 0; x < w; ++x)
                    grid.data()[(c * gh + oy + y) * gw + ox + x] = images[static_cast<size_t>(k)].data()[(c * h + y) * w + x];
    }
    io::write_png(path, grid);
}

}  // namespace fsad::method
