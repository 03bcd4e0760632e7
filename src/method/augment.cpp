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
// from [1-x, 1+x] (hue: a shift from [-x, x]); the draws in the shuffled order.
Jitter sample_jitter(float b, float c, float s, float h, Rng& rng) {
    Jitter j;
    std::shuffle(j.order, j.order + 4, rng.engine());
    const float range[4] = {b, c, s, h};
    for (int k : j.order) {
        if (range[k] <= 0) continue;
        j.on[k] = true;
        j.factor[k] = k == 3 ? rng.uniform(-h, h) : rng.uniform(1 - range[k], 1 + range[k]);
    }
    return j;
}

Tensor apply_jitter(const Tensor& img, const Jitter& j) {
    Tensor out = img;
    for (int k : j.order) {
        if (!j.on[k]) continue;
        if (k == 0) out = adjust_brightness(out, j.factor[k]);
        if (k == 1) out = adjust_contrast(out, j.factor[k]);
        if (k == 2) out = adjust_saturation(out, j.factor[k]);
        if (k == 3) out = adjust_hue(out, j.factor[k]);
    }
    return out;
}

NegativeParams sample_cutpaste(int64_t h, int64_t w, Rng& rng) {
    NegativeParams p;
    p.kind = Negative::CutPaste;
    const double area = static_cast<double>(h * w) * rng.uniform(0.02f, 0.15f);
    const double aspect = std::exp(rng.uniform(std::log(0.3f), std::log(1.0f / 0.3f)));
    p.pw = std::clamp<int64_t>(std::lround(std::sqrt(area * aspect)), 1, w);
    p.ph = std::clamp<int64_t>(std::lround(std::sqrt(area / aspect)), 1, h);
    p.sy = rng.integer(0, h - p.ph);
    p.sx = rng.integer(0, w - p.pw);
    p.dy = rng.integer(0, h - p.ph);
    p.dx = rng.integer(0, w - p.pw);
    p.jitter = sample_jitter(0.1f, 0.1f, 0.1f, 0.1f, rng);
    return p;
}

// a strip sl x sw (ph x pw), rotated inside a square canvas large enough for any angle
NegativeParams sample_scar(int64_t h, int64_t w, Rng& rng) {
    NegativeParams p;
    p.kind = Negative::Scar;
    p.pw = std::min<int64_t>(rng.integer(2, 16), w);
    p.ph = std::min<int64_t>(rng.integer(10, 25), h);
    p.degrees = rng.uniform(-45.0f, 45.0f);
    p.sy = rng.integer(0, h - p.ph);
    p.sx = rng.integer(0, w - p.pw);
    p.jitter = sample_jitter(0.1f, 0.1f, 0.1f, 0.1f, rng);
    p.side = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(p.pw * p.pw + p.ph * p.ph)))) + 2;
    p.dy = rng.integer(-p.side / 4, std::max<int64_t>(0, h - p.side + p.side / 4));
    p.dx = rng.integer(-p.side / 4, std::max<int64_t>(0, w - p.side + p.side / 4));
    return p;
}

// the patch of a CutPaste or scar: cut from img, colour-jittered
Tensor negative_patch(const Tensor& img, const NegativeParams& p) {
    return apply_jitter(crop_resize(img, static_cast<double>(p.sy), static_cast<double>(p.sx), static_cast<double>(p.ph),
                                    static_cast<double>(p.pw), p.ph, p.pw),
                        p.jitter);
}

// Where a CutPaste or scar puts its patch (patch index `patch` of a packed set): CutPaste the
// patch itself at (dy, dx); the scar a side x side canvas with the strip in its middle, rotated
// (math::canvas_at: the strip's footprint, rotated alike, says which pixels it covers).
ops::PasteJob paste_job(const NegativeParams& p, int64_t patch) {
    ops::PasteJob j;
    j.patch = patch;
    j.dy = p.dy;
    j.dx = p.dx;
    if (p.kind == Negative::CutPaste) {
        j.canvas_h = p.ph;
        j.canvas_w = p.pw;
    } else {
        j.canvas_h = j.canvas_w = p.side;
        j.oy = (p.side - p.ph) / 2;
        j.ox = (p.side - p.pw) / 2;
        j.rotate = true;
        j.degrees = p.degrees;
    }
    return j;
}

// Round k of a batch's colour jitter: view i's k-th adjustment (or none).
std::vector<ops::ColourOp> jitter_round(const std::vector<const Jitter*>& jitters, int k, bool& any) {
    static const math::Colour kinds[4] = {math::Colour::Brightness, math::Colour::Contrast, math::Colour::Saturation, math::Colour::Hue};
    std::vector<ops::ColourOp> ops(jitters.size());
    any = false;
    for (size_t i = 0; i < jitters.size(); ++i) {
        const Jitter* j = jitters[i];
        if (!j || !j->on[j->order[k]]) continue;
        ops[i] = {kinds[j->order[k]], j->factor[j->order[k]]};
        any = true;
    }
    return ops;
}

// The batch's colour jitters, four rounds (null: no jitter for that image).
Tensor jitter_images(Tensor x, const std::vector<ops::PackedImage>& layout, const std::vector<const Jitter*>& jitters) {
    for (int k = 0; k < 4; ++k) {
        bool any = false;
        const std::vector<ops::ColourOp> ops = jitter_round(jitters, k, any);
        if (any) x = ops::colour_images(x, layout, ops);
    }
    return x;
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


AugmentParams sample_augment(int64_t height, int64_t width, const AugmentOptions& o, Rng& rng) {
    FSAD_CHECK(height > 0 && width > 0, "augment: empty image ", height, "x", width);
    FSAD_CHECK(o.size > 0, "augment: output size must be positive");
    FSAD_CHECK((o.out_h > 0) == (o.out_w > 0), "augment: out_h and out_w go together");
    const double H = static_cast<double>(height), W = static_cast<double>(width), area = H * W;
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
    AugmentParams p;
    p.crop = {.image = 0, .y0 = y0, .x0 = x0, .h = ch, .w = cw, .out_h = oh, .out_w = ow};
    p.crop.hflip = rng.bernoulli(o.hflip);
    p.crop.vflip = rng.bernoulli(o.vflip);
    if (o.max_rotation > 0) {
        p.rotate = true;
        p.degrees = rng.uniform(-o.max_rotation, o.max_rotation);
    }
    if (!o.colour) return p;
    if (rng.bernoulli(o.jitter_p)) {
        p.jitter = true;
        p.jitter_params = sample_jitter(o.brightness, o.contrast, o.saturation, o.hue, rng);
    }
    p.grayscale = rng.bernoulli(o.grayscale_p);
    if (rng.bernoulli(o.blur_p)) p.blur_sigma = rng.uniform(o.blur_sigma_min, o.blur_sigma_max);
    return p;
}

Tensor apply_augment(const Tensor& img, const AugmentParams& p) {
    check_rgb(img, "augment");
    const ops::CropJob& c = p.crop;
    Tensor out = crop_resize(img, c.y0, c.x0, c.h, c.w, c.out_h, c.out_w);
    if (c.hflip) out = flip(out, true);
    if (c.vflip) out = flip(out, false);
    if (p.rotate) out = rotate(out, p.degrees);
    if (p.jitter) out = apply_jitter(out, p.jitter_params);
    if (p.grayscale) out = to_grayscale(out);
    if (p.blur_sigma > 0) out = gaussian_blur(out, p.blur_sigma);
    return out;
}

Tensor augment(const Tensor& img, const AugmentOptions& o, Rng& rng) {
    check_rgb(img, "augment");
    return apply_augment(img, sample_augment(img.dim(1), img.dim(2), o, rng));
}

NegativeParams sample_negative(int64_t h, int64_t w, Negative kind, Rng& rng) {
    FSAD_CHECK(h > 0 && w > 0, "negative: empty image ", h, "x", w);
    switch (kind) {
        case Negative::None: return {};
        case Negative::CutPaste: return sample_cutpaste(h, w, rng);
        case Negative::Scar: return sample_scar(h, w, rng);
        case Negative::Union: return rng.bernoulli(0.5f) ? sample_cutpaste(h, w, rng) : sample_scar(h, w, rng);
        case Negative::CifarBlurShift: {
            NegativeParams p;
            p.kind = kind;
            p.sigma = rng.uniform(0.5f, 1.5f);
            p.brightness = rng.bernoulli(0.5f) ? rng.uniform(0.6f, 0.8f) : rng.uniform(1.2f, 1.4f);
            p.contrast = rng.bernoulli(0.5f) ? rng.uniform(0.6f, 0.8f) : rng.uniform(1.2f, 1.4f);
            return p;
        }
    }
    return {};
}

Tensor apply_negative(const Tensor& img, const NegativeParams& p) {
    check_rgb(img, "negative");
    switch (p.kind) {
        case Negative::None:
        case Negative::Union: return img;  // (Union is resolved by sample_negative)
        case Negative::CutPaste:
        case Negative::Scar: {  // the batched op on this one image
            const Tensor out = img.clone(), patch = negative_patch(img, p);
            ops::paste_images(out, {{0, img.dim(1), img.dim(2)}}, patch, {{0, p.ph, p.pw}}, {paste_job(p, 0)});
            return out;
        }
        case Negative::CifarBlurShift:
            return adjust_contrast(adjust_brightness(gaussian_blur(img, p.sigma), p.brightness), p.contrast);
    }
    return img;
}

Tensor pack_images(const std::vector<Tensor>& images, std::vector<ops::PackedImage>& layout, Device device) {
    std::vector<std::pair<int64_t, int64_t>> sizes;
    for (size_t i = 0; i < images.size(); ++i) {
        FSAD_CHECK(images[i].device().is_cpu(), "pack_images: image ", i, " is not on the CPU");
        check_rgb(images[i], "pack_images");
        sizes.emplace_back(images[i].dim(1), images[i].dim(2));
    }
    int64_t total = 0;
    layout = ops::pack_images(sizes, &total);
    Tensor host = Tensor::empty(Shape{total});
    for (size_t i = 0; i < images.size(); ++i)
        std::copy(images[i].data(), images[i].data() + images[i].numel(), host.data() + layout[i].offset);
    return device.is_cpu() ? host : host.to(device);
}

Tensor augment_images(const Tensor& packed, const std::vector<ops::PackedImage>& images, const std::vector<AugmentParams>& params) {
    FSAD_CHECK(!params.empty(), "augment_images: no views");
    const int64_t n = static_cast<int64_t>(params.size()), oh = params[0].crop.out_h, ow = params[0].crop.out_w;
    std::vector<ops::CropJob> crops;
    std::vector<float> degrees;
    std::vector<const Jitter*> jitters;
    std::vector<ops::ColourOp> gray;
    std::vector<std::vector<float>> taps;
    bool rotate = false, grayscale = false, blur = false;
    for (const AugmentParams& p : params) {
        FSAD_CHECK(p.crop.out_h == oh && p.crop.out_w == ow, "augment_images: views of different sizes (", p.crop.out_h, "x",
                   p.crop.out_w, " and ", oh, "x", ow, ")");
        crops.push_back(p.crop);
        degrees.push_back(p.rotate ? p.degrees : 0.0f);  // 0 degrees reads every pixel where it is
        jitters.push_back(p.jitter ? &p.jitter_params : nullptr);
        gray.push_back({p.grayscale ? math::Colour::Grayscale : math::Colour::None, 0});
        taps.push_back(p.blur_sigma > 0 ? imgproc::gaussian_taps(p.blur_sigma) : std::vector<float>{});
        rotate |= p.rotate;
        grayscale |= p.grayscale;
        blur |= p.blur_sigma > 0;
    }
    const std::vector<ops::PackedImage> layout = ops::pack_images(std::vector<std::pair<int64_t, int64_t>>(params.size(), {oh, ow}));
    Tensor x = ops::crop_resize_images(packed, images, crops);
    if (rotate) x = ops::rotate_images(x, layout, degrees);
    x = jitter_images(x, layout, jitters);
    if (grayscale) x = ops::colour_images(x, layout, gray);
    if (blur) x = ops::blur_images(x, layout, taps);
    return x.reshape(Shape{n, 3, oh, ow});
}

Tensor negative_images(const Tensor& views, const std::vector<NegativeParams>& params) {
    FSAD_CHECK(views.defined() && views.ndim() == 4 && views.dim(1) == 3 && views.dim(0) == static_cast<int64_t>(params.size()),
               "negative_images: expected views [n,3,h,w] and one draw per view, got ",
               views.defined() ? views.shape().str() : std::string("undefined"), " and ", params.size());
    const int64_t n = views.dim(0), h = views.dim(2), w = views.dim(3);
    const std::vector<ops::PackedImage> layout = ops::pack_images(std::vector<std::pair<int64_t, int64_t>>(params.size(), {h, w}));
    Tensor out = views.clone().reshape(Shape{views.numel()});
    // CutPaste and scar: the patches cut from the views, jittered, pasted
    std::vector<ops::CropJob> crops;
    std::vector<std::pair<int64_t, int64_t>> sizes;
    std::vector<const Jitter*> jitters;
    std::vector<ops::PasteJob> jobs(params.size());
    bool cifar = false;
    for (int64_t i = 0; i < n; ++i) {
        const NegativeParams& p = params[static_cast<size_t>(i)];
        cifar |= p.kind == Negative::CifarBlurShift;
        if (p.kind != Negative::CutPaste && p.kind != Negative::Scar) continue;
        jobs[static_cast<size_t>(i)] = paste_job(p, static_cast<int64_t>(crops.size()));
        crops.push_back({.image = i, .y0 = double(p.sy), .x0 = double(p.sx), .h = double(p.ph), .w = double(p.pw), .out_h = p.ph,
                         .out_w = p.pw});
        sizes.emplace_back(p.ph, p.pw);
        jitters.push_back(&p.jitter);
    }
    if (!crops.empty()) {
        const std::vector<ops::PackedImage> patch_layout = ops::pack_images(sizes);
        const Tensor patches = jitter_images(ops::crop_resize_images(out, layout, crops), patch_layout, jitters);
        ops::paste_images(out, layout, patches, patch_layout, jobs);
    }
    if (cifar) {  // blur, brightness, contrast
        std::vector<std::vector<float>> taps(params.size());
        std::vector<ops::ColourOp> bright(params.size()), contrast(params.size());
        for (size_t i = 0; i < params.size(); ++i) {
            const NegativeParams& p = params[i];
            if (p.kind != Negative::CifarBlurShift) continue;
            taps[i] = imgproc::gaussian_taps(p.sigma);
            bright[i] = {math::Colour::Brightness, p.brightness};
            contrast[i] = {math::Colour::Contrast, p.contrast};
        }
        out = ops::colour_images(ops::colour_images(ops::blur_images(out, layout, taps), layout, bright), layout, contrast);
    }
    return out.reshape(views.shape());
}

Tensor synthetic_defect(const Tensor& img, Rng& rng) {
    check_rgb(img, "synthetic_defect");
    const int64_t kind = rng.integer(0, 2);
    if (kind == 0) return apply_negative(img, sample_cutpaste(img.dim(1), img.dim(2), rng));
    if (kind == 1) return apply_negative(img, sample_scar(img.dim(1), img.dim(2), rng));
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
    return apply_negative(img, sample_negative(img.dim(1), img.dim(2), kind, rng));
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
