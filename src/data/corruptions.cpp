// Severity-2 corruptions of Hendrycks & Dietterich's make_cifar_c.py, written against [3,H,W]
// float images. Where their generator calls a library (skimage, OpenCV, scipy, Pillow) the
// operation is re-derived here; the comments name the call it stands for.
#include "fsad/data/corruptions.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "fsad/core/error.hpp"
#include "fsad/imgproc/transforms.hpp"
#include "fsad/io/image.hpp"

namespace fsad::data {
namespace {

void check_img(const Tensor& img, const char* what) {
    FSAD_CHECK(img.ndim() == 3 && img.dim(0) == 3 && img.dim(1) > 0 && img.dim(2) > 0, what,
               ": expected an RGB image [3,H,W], got ", img.shape().str());
}

Tensor clip01(Tensor t) {
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::clamp(t.data()[i], 0.0f, 1.0f);
    return t;
}

int64_t reflect101(int64_t i, int64_t n) {  // OpenCV's BORDER_REFLECT_101: dcb|abcd|cba
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

float bilinear(const float* ch, int64_t h, int64_t w, double y, double x) {  // reflect-101 outside
    const int64_t y0 = static_cast<int64_t>(std::floor(y)), x0 = static_cast<int64_t>(std::floor(x));
    const double fy = y - static_cast<double>(y0), fx = x - static_cast<double>(x0);
    auto at = [&](int64_t yy, int64_t xx) { return static_cast<double>(ch[reflect101(yy, h) * w + reflect101(xx, w)]); };
    return static_cast<float>((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) +
                              fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)));
}

// cv2.GaussianBlur(kernel, (3,3), sigma) on a small kernel array (reflect-101 border)
std::vector<float> blur3(const std::vector<float>& k, int64_t n, double sigma) {
    const double e = std::exp(-1.0 / (2 * sigma * sigma));
    const double g[3] = {e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)};
    std::vector<float> tmp(k.size()), out(k.size());
    for (int64_t y = 0; y < n; ++y)
        for (int64_t x = 0; x < n; ++x) {
            double s = 0;
            for (int d = -1; d <= 1; ++d) s += g[d + 1] * k[static_cast<size_t>(y * n + reflect101(x + d, n))];
            tmp[static_cast<size_t>(y * n + x)] = static_cast<float>(s);
        }
    for (int64_t y = 0; y < n; ++y)
        for (int64_t x = 0; x < n; ++x) {
            double s = 0;
            for (int d = -1; d <= 1; ++d) s += g[d + 1] * tmp[static_cast<size_t>(reflect101(y + d, n) * n + x)];
            out[static_cast<size_t>(y * n + x)] = static_cast<float>(s);
        }
    return out;
}

// clipped_zoom: scipy.ndimage.zoom(order=1) of the centre 1/z of the image, trimmed back to h x w
Tensor clipped_zoom(const Tensor& img, double z) {
    const int64_t h = img.dim(1), w = img.dim(2);
    Tensor out = Tensor::empty(img.shape());
    auto axis = [z](int64_t n, std::vector<double>& src) {
        const int64_t c = static_cast<int64_t>(std::ceil(static_cast<double>(n) / z));
        const int64_t top = (n - c) / 2;
        const int64_t zn = static_cast<int64_t>(std::lround(static_cast<double>(c) * z));
        const int64_t trim = (zn - n) / 2;
        src.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            const int64_t o = i + trim;  // index in the zoomed crop; scipy maps o -> o * (c-1)/(zn-1)
            const double s = zn > 1 ? static_cast<double>(o) * static_cast<double>(c - 1) / static_cast<double>(zn - 1) : 0.0;
            src[static_cast<size_t>(i)] = static_cast<double>(top) + std::clamp(s, 0.0, static_cast<double>(c - 1));
        }
    };
    std::vector<double> sy, sx;
    axis(h, sy);
    axis(w, sx);
    for (int64_t c = 0; c < 3; ++c)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x)
                out.data()[(c * h + y) * w + x] =
                    bilinear(img.data() + c * h * w, h, w, sy[static_cast<size_t>(y)], sx[static_cast<size_t>(x)]);
    return out;
}

Tensor gaussian_noise(const Tensor& x, Rng& rng) {
    Tensor o = x.clone();
    for (int64_t i = 0; i < o.numel(); ++i) o.data()[i] += rng.normal(0.0f, 0.06f);
    return clip01(o);
}

Tensor shot_noise(const Tensor& x, Rng& rng) {
    Tensor o = x.clone();
    for (int64_t i = 0; i < o.numel(); ++i) {
        const double lam = std::max(0.0, static_cast<double>(o.data()[i]) * 250.0);
        o.data()[i] = lam > 0 ? static_cast<float>(static_cast<double>(std::poisson_distribution<int64_t>(lam)(rng.engine())) / 250.0) : 0.0f;
    }
    return clip01(o);
}

Tensor impulse_noise(const Tensor& x, Rng& rng) {  // skimage random_noise(mode='s&p', amount=0.02)
    Tensor o = x.clone();
    for (int64_t i = 0; i < o.numel(); ++i)
        if (rng.uniform() <= 0.02f) o.data()[i] = rng.uniform() <= 0.5f ? 1.0f : 0.0f;
    return o;
}

Tensor defocus_blur(const Tensor& x) {  // disk(radius 0.4, alias_blur 0.5), cv2.filter2D per channel
    const double radius = 0.4, alias = 0.5;
    const int64_t n = 17;  // np.arange(-8, 8 + 1) for radius <= 8
    std::vector<float> k(static_cast<size_t>(n * n));
    double sum = 0;
    for (int64_t y = 0; y < n; ++y)
        for (int64_t xx = 0; xx < n; ++xx) {
            const double dy = static_cast<double>(y - 8), dx = static_cast<double>(xx - 8);
            const float v = dx * dx + dy * dy <= radius * radius ? 1.0f : 0.0f;
            k[static_cast<size_t>(y * n + xx)] = v;
            sum += v;
        }
    for (auto& v : k) v = static_cast<float>(v / sum);
    return clip01(filter2d(x, blur3(k, n, alias), n));
}

Tensor zoom_blur(const Tensor& x) {
    Tensor acc = Tensor::zeros(x.shape());
    int n = 0;
    for (int i = 0; i <= 10; ++i, ++n) {  // np.arange(1, 1.11, 0.01)
        Tensor z = clipped_zoom(x, 1.0 + 0.01 * i);
        for (int64_t j = 0; j < acc.numel(); ++j) acc.data()[j] += z.data()[j];
    }
    for (int64_t j = 0; j < acc.numel(); ++j) acc.data()[j] = (x.data()[j] + acc.data()[j]) / static_cast<float>(n + 1);
    return clip01(acc);
}

Tensor brightness(const Tensor& x) {
    Tensor hsv = rgb_to_hsv(x);
    const int64_t hw = x.dim(1) * x.dim(2);
    for (int64_t i = 0; i < hw; ++i) hsv.data()[2 * hw + i] = std::clamp(hsv.data()[2 * hw + i] + 0.1f, 0.0f, 1.0f);
    return clip01(hsv_to_rgb(hsv));
}

Tensor contrast(const Tensor& x) {
    Tensor o = x.clone();
    const int64_t hw = x.dim(1) * x.dim(2);
    for (int64_t c = 0; c < 3; ++c) {
        double m = 0;
        for (int64_t i = 0; i < hw; ++i) m += x.data()[c * hw + i];
        m /= static_cast<double>(hw);
        for (int64_t i = 0; i < hw; ++i)
            o.data()[c * hw + i] = static_cast<float>((x.data()[c * hw + i] - m) * 0.5 + m);
    }
    return clip01(o);
}

Tensor pixelate(const Tensor& x) {
    const int64_t h = x.dim(1), w = x.dim(2);
    const int64_t sh = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(h) * 0.9));
    const int64_t sw = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(w) * 0.9));
    return box_resize(box_resize(x, sh, sw), h, w);
}

Tensor jpeg(const Tensor& x) { return io::decode_image(io::encode_jpeg(x, 65), "jpeg corruption"); }

Tensor glass_blur(const Tensor& x, Rng& rng) {  // sigma 0.25, max shift 1, 1 iteration
    const int64_t h = x.dim(1), w = x.dim(2), d = 1;
    Tensor o = imgproc::gaussian_blur(x, 0.25f);
    for (int64_t y = h - d; y > d; --y)  // range(h - d, d, -1): the last row/column is visited too
        for (int64_t xx = w - d; xx > d; --xx) {
            const int64_t dx = rng.integer(-d, d - 1), dy = rng.integer(-d, d - 1);  // np.random.randint(-d, d)
            for (int64_t c = 0; c < 3; ++c)
                std::swap(o.data()[(c * h + y) * w + xx], o.data()[(c * h + y + dy) * w + xx + dx]);
        }
    return clip01(imgproc::gaussian_blur(o, 0.25f));
}

Tensor elastic(const Tensor& x, Rng& rng) {  // alpha 1.6, sigma 6.4, affine jitter 2.24 px
    const int64_t h = x.dim(1), w = x.dim(2);
    const double alpha = 1.6, sigma = 6.4, jitter = 2.24;
    // affine map from three jittered points around the centre (cv2.getAffineTransform)
    const double cy = static_cast<double>(h) / 2, cx = static_cast<double>(w) / 2, sq = static_cast<double>(std::min(h, w)) / 3;
    const double src[3][2] = {{cx + sq, cy + sq}, {cx + sq, cy - sq}, {cx - sq, cy - sq}};
    double dst[3][2];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 2; ++j) dst[i][j] = src[i][j] + rng.uniform(static_cast<float>(-jitter), static_cast<float>(jitter));
    // solve the 2x3 map A with A * [src;1] = dst (inverse used for sampling: dst -> src)
    auto solve = [](const double p[3][2], const double q[3][2], double m[2][3]) {
        const double det = p[0][0] * (p[1][1] - p[2][1]) - p[0][1] * (p[1][0] - p[2][0]) + (p[1][0] * p[2][1] - p[2][0] * p[1][1]);
        for (int r = 0; r < 2; ++r) {
            const double a = q[0][r], b = q[1][r], c = q[2][r];
            m[r][0] = (a * (p[1][1] - p[2][1]) - p[0][1] * (b - c) + (b * p[2][1] - c * p[1][1])) / det;
            m[r][1] = (p[0][0] * (b - c) - a * (p[1][0] - p[2][0]) + (p[1][0] * c - p[2][0] * b)) / det;
            m[r][2] = (p[0][0] * (p[1][1] * c - p[2][1] * b) - p[0][1] * (p[1][0] * c - p[2][0] * b) +
                       a * (p[1][0] * p[2][1] - p[2][0] * p[1][1])) / det;
        }
    };
    double inv[2][3];
    solve(dst, src, inv);
    Tensor field = Tensor::empty(Shape{3, h, w});  // dx, dy, unused
    for (int64_t i = 0; i < 2 * h * w; ++i) field.data()[i] = rng.uniform(-1.0f, 1.0f);
    for (int64_t i = 2 * h * w; i < 3 * h * w; ++i) field.data()[i] = 0.0f;
    field = imgproc::gaussian_blur(field, static_cast<float>(sigma));
    Tensor o = Tensor::empty(x.shape());
    for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) {
            const double px = static_cast<double>(xx) + alpha * field.data()[y * w + xx];
            const double py = static_cast<double>(y) + alpha * field.data()[h * w + y * w + xx];
            const double sx = inv[0][0] * px + inv[0][1] * py + inv[0][2], sy = inv[1][0] * px + inv[1][1] * py + inv[1][2];
            for (int64_t c = 0; c < 3; ++c) o.data()[(c * h + y) * w + xx] = bilinear(x.data() + c * h * w, h, w, sy, sx);
        }
    return clip01(o);
}

}  // namespace

std::vector<std::string> default_corruptions() {
    return {"gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "zoom_blur",
            "brightness",     "contrast",   "pixelate",      "jpeg"};
}

std::vector<std::string> all_corruptions() {
    auto v = default_corruptions();
    v.push_back("glass_blur");
    v.push_back("elastic");
    return v;
}

Tensor corrupt(const Tensor& img, const std::string& name, Rng& rng) {
    check_img(img, "corrupt");
    if (name == "gaussian_noise") return gaussian_noise(img, rng);
    if (name == "shot_noise") return shot_noise(img, rng);
    if (name == "impulse_noise") return impulse_noise(img, rng);
    if (name == "defocus_blur") return defocus_blur(img);
    if (name == "zoom_blur") return zoom_blur(img);
    if (name == "brightness") return brightness(img);
    if (name == "contrast") return contrast(img);
    if (name == "pixelate") return pixelate(img);
    if (name == "jpeg") return jpeg(img);
    if (name == "glass_blur") return glass_blur(img, rng);
    if (name == "elastic") return elastic(img, rng);
    std::string known;
    for (const auto& n : all_corruptions()) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown corruption '" + name + "' (known: " + known + ")");
}

Tensor rgb_to_hsv(const Tensor& img) {  // skimage.color.rgb2hsv
    check_img(img, "rgb_to_hsv");
    const int64_t hw = img.dim(1) * img.dim(2);
    Tensor o = Tensor::empty(img.shape());
    const float *r = img.data(), *g = r + hw, *b = g + hw;
    for (int64_t i = 0; i < hw; ++i) {
        const float v = std::max({r[i], g[i], b[i]}), mn = std::min({r[i], g[i], b[i]}), d = v - mn;
        float h = 0;
        if (d > 0) {
            if (r[i] == v) h = (g[i] - b[i]) / d;
            else if (g[i] == v) h = 2.0f + (b[i] - r[i]) / d;
            else h = 4.0f + (r[i] - g[i]) / d;
            h = h / 6.0f;
            h -= std::floor(h);
        }
        o.data()[i] = h;
        o.data()[hw + i] = v > 0 ? d / v : 0.0f;
        o.data()[2 * hw + i] = v;
    }
    return o;
}

Tensor hsv_to_rgb(const Tensor& hsv) {  // skimage.color.hsv2rgb
    check_img(hsv, "hsv_to_rgb");
    const int64_t hw = hsv.dim(1) * hsv.dim(2);
    Tensor o = Tensor::empty(hsv.shape());
    for (int64_t i = 0; i < hw; ++i) {
        const float h = hsv.data()[i], s = hsv.data()[hw + i], v = hsv.data()[2 * hw + i];
        const float hi = std::floor(h * 6.0f), f = h * 6.0f - hi;
        const float p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
        float rgb[3];
        switch (((static_cast<int>(hi) % 6) + 6) % 6) {
            case 0: rgb[0] = v, rgb[1] = t, rgb[2] = p; break;
            case 1: rgb[0] = q, rgb[1] = v, rgb[2] = p; break;
            case 2: rgb[0] = p, rgb[1] = v, rgb[2] = t; break;
            case 3: rgb[0] = p, rgb[1] = q, rgb[2] = v; break;
            case 4: rgb[0] = t, rgb[1] = p, rgb[2] = v; break;
            default: rgb[0] = v, rgb[1] = p, rgb[2] = q; break;
        }
        for (int c = 0; c < 3; ++c) o.data()[c * hw + i] = rgb[c];
    }
    return o;
}

Tensor box_resize(const Tensor& img, int64_t out_h, int64_t out_w) {  // Pillow's BOX resampling
    FSAD_CHECK(img.ndim() == 3 && out_h > 0 && out_w > 0, "box_resize: bad shape ", img.shape().str(), " -> ", out_h, "x", out_w);
    auto weights = [](int64_t in, int64_t out) {
        std::vector<std::vector<std::pair<int64_t, double>>> wts(static_cast<size_t>(out));
        const double scale = static_cast<double>(in) / static_cast<double>(out), fs = std::max(scale, 1.0);
        const double support = 0.5 * fs, ss = 1.0 / fs;
        for (int64_t o = 0; o < out; ++o) {
            const double centre = (static_cast<double>(o) + 0.5) * scale;
            const int64_t lo = std::max<int64_t>(static_cast<int64_t>(centre - support + 0.5), 0);
            const int64_t hi = std::min<int64_t>(static_cast<int64_t>(centre + support + 0.5), in);
            double total = 0;
            for (int64_t x = lo; x < hi; ++x) {
                const double t = (static_cast<double>(x) - centre + 0.5) * ss;
                if (t > -0.5 && t <= 0.5) {
                    wts[static_cast<size_t>(o)].push_back({x, 1.0});
                    total += 1.0;
                }
            }
            if (total == 0) wts[static_cast<size_t>(o)].push_back({std::min(lo, in - 1), total = 1.0});
            for (auto& [x, wv] : wts[static_cast<size_t>(o)]) wv /= total;
        }
        return wts;
    };
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2);
    auto wy = weights(h, out_h), wx = weights(w, out_w);
    Tensor tmp = Tensor::empty(Shape{c, h, out_w}), out = Tensor::empty(Shape{c, out_h, out_w});
    for (int64_t k = 0; k < c; ++k)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < out_w; ++x) {
                double s = 0;
                for (auto [i, wv] : wx[static_cast<size_t>(x)]) s += wv * img.data()[(k * h + y) * w + i];
                tmp.data()[(k * h + y) * out_w + x] = static_cast<float>(s);
            }
    for (int64_t k = 0; k < c; ++k)
        for (int64_t y = 0; y < out_h; ++y)
            for (int64_t x = 0; x < out_w; ++x) {
                double s = 0;
                for (auto [i, wv] : wy[static_cast<size_t>(y)]) s += wv * tmp.data()[(k * h + i) * out_w + x];
                out.data()[(k * out_h + y) * out_w + x] = static_cast<float>(s);
            }
    return out;
}

Tensor filter2d(const Tensor& img, const std::vector<float>& kernel, int64_t k) {
    FSAD_CHECK(img.ndim() == 3 && k > 0 && k % 2 == 1 && static_cast<int64_t>(kernel.size()) == k * k,
               "filter2d: expected [C,H,W] and an odd k x k kernel, got ", img.shape().str(), " and ", kernel.size(), " taps");
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2), r = k / 2;
    Tensor out = Tensor::empty(img.shape());
    for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                double s = 0;
                for (int64_t dy = -r; dy <= r; ++dy)
                    for (int64_t dx = -r; dx <= r; ++dx) {
                        const float kv = kernel[static_cast<size_t>((dy + r) * k + dx + r)];
                        if (kv != 0.0f) s += kv * img.data()[(ch * h + reflect101(y + dy, h)) * w + reflect101(x + dx, w)];
                    }
                out.data()[(ch * h + y) * w + x] = static_cast<float>(s);
            }
    return out;
}

}  // namespace fsad::data
