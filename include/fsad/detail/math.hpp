// Element-wise arithmetic shared by the CPU loops and the CUDA kernels. Marked host+device so
// that the CPU tests exercise exactly the arithmetic the GPU runs.
// Internal (include/fsad/detail/): needed by public headers, the library's sources or its tests,
// not part of the API; it may change without notice. The umbrella fsad/fsad.hpp does not list it.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define FSAD_HD __host__ __device__ __forceinline__
#else
#define FSAD_HD inline
#endif

namespace fsad::math {

/// Identity lets ops that fuse an activation (batch norm) run without one.
enum class Activation { ReLU = 0, ReLU6 = 1, Identity = 2 };

FSAD_HD float activation(float x, Activation a) {
    if (a == Activation::Identity) return x;
    float y = x > 0.0f ? x : 0.0f;
    return (a == Activation::ReLU6 && y > 6.0f) ? 6.0f : y;
}
/// d act / dx written in terms of the OUTPUT y (so the input need not be kept): y in (0, cap).
FSAD_HD float activation_grad(float y, float dy, Activation a) {
    if (a == Activation::Identity) return dy;
    bool pass = y > 0.0f && (a == Activation::ReLU || y < 6.0f);
    return pass ? dy : 0.0f;
}

/// Adam (Kingma & Ba) with bias correction folded into the step size, as PyTorch computes it:
///   m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
///   p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
/// Weight decay (L2, PyTorch's Adam) adds wd*p to g first.
struct AdamStep {
    float lr, beta1, beta2, eps, weight_decay;
    float bias_c1;       // 1 - beta1^t
    float sqrt_bias_c2;  // sqrt(1 - beta2^t)
};
FSAD_HD void adam_update(float& p, float g, float& m, float& v, const AdamStep& s) {
    g += s.weight_decay * p;
    m = s.beta1 * m + (1.0f - s.beta1) * g;
    v = s.beta2 * v + (1.0f - s.beta2) * g * g;
    float denom = sqrtf(v) / s.sqrt_bias_c2 + s.eps;
    p -= (s.lr / s.bias_c1) * m / denom;
}

/// EMA target update (BYOL): t <- beta * t + (1 - beta) * o, computed as t + (1 - beta)(o - t)
/// (torch.lerp's form) so that a target equal to the online value (a frozen layer) stays exactly
/// as it is with or without FMA contraction.
FSAD_HD float ema(float t, float o, float beta) { return t + (1.0f - beta) * (o - t); }

/// 1 / sqrt(var + eps): the evaluation-mode scale of a channel (its backward's invstd).
FSAD_HD float bn_invstd(float var, float eps) { return 1.0f / sqrtf(var + eps); }
/// Evaluation-mode batch norm as y = x * scale + shift: the per-channel coefficients, shared by the
/// CPU and CUDA batch-norm kernels and the fused convolution (so that fused and separate agree).
FSAD_HD void bn_eval_affine(float gamma, float beta, float mean, float var, float eps, float& scale, float& shift) {
    const float is = bn_invstd(var, eps);
    scale = gamma * is;
    shift = beta - mean * scale;
}

/// Batch-norm normalisation of one value with saved statistics.
FSAD_HD float bn_apply(float x, float mean, float invstd, float gamma, float beta) {
    return (x - mean) * invstd * gamma + beta;
}

// ---- bfloat16: the upper 16 bits of a float32 (8-bit exponent, 7-bit mantissa)
/// The bits of a float (a bit cast, on the host and the device).
FSAD_HD uint32_t float_bits(float v) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(v);
#else
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return u;
#endif
}
FSAD_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float v;
    std::memcpy(&v, &u, sizeof v);
    return v;
#endif
}
/// float32 -> bfloat16 bits, rounded to nearest, ties to even (PyTorch's c10::BFloat16 and CUDA's
/// __float2bfloat16_rn): adding 0x7fff plus the lowest kept bit carries into the kept half exactly
/// when the dropped half is above the tie, or at the tie with an odd kept half. Subnormals are
/// kept, finite values past the largest bfloat16 round to infinity, a NaN stays a (quiet) NaN.
FSAD_HD uint16_t bf16_bits(float v) {
    const uint32_t u = float_bits(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
    return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
/// bfloat16 bits -> float32 (exact).
FSAD_HD float bf16_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }
/// v rounded to the nearest bfloat16, as a float32.
FSAD_HD float round_bf16(float v) { return bf16_float(bf16_bits(v)); }

/// Bilinear resizing with half-pixel centres and no antialiasing (PyTorch's F.interpolate(mode=
/// "bilinear", align_corners=False)): output index o of a resize from n_in samples, scale = n_in /
/// n_out, reads samples i0 and i1 with weights 1 - l and l. Shared by imgproc's resize and both
/// backends' resize_bilinear kernels, so that all three give the same numbers.
struct BilinearTap {
    int64_t i0, i1;
    float l;
};
FSAD_HD BilinearTap bilinear_tap(int64_t o, int64_t n_in, float scale) {
    float f = (static_cast<float>(o) + 0.5f) * scale - 0.5f;
    f = f > 0.0f ? f : 0.0f;
    BilinearTap t;
    t.i0 = static_cast<int64_t>(f);
    if (t.i0 > n_in - 1) t.i0 = n_in - 1;
    t.i1 = t.i0 + 1 < n_in ? t.i0 + 1 : n_in - 1;
    t.l = f - static_cast<float>(t.i0);
    return t;
}
/// The value at (ty, tx) of a plane p with `w` columns.
FSAD_HD float bilinear_at(const float* p, int64_t w, const BilinearTap& ty, const BilinearTap& tx) {
    return (1 - ty.l) * ((1 - tx.l) * p[ty.i0 * w + tx.i0] + tx.l * p[ty.i0 * w + tx.i1]) +
           ty.l * ((1 - tx.l) * p[ty.i1 * w + tx.i0] + tx.l * p[ty.i1 * w + tx.i1]);
}

/// scipy.ndimage's 'reflect' border (half-sample symmetric: d c b a | a b c d | d c b a): the
/// sample that index i of a line of n reads.
FSAD_HD int64_t reflect_index(int64_t i, int64_t n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
}
/// A NaN-propagating maximum: NaN when either is NaN.
FSAD_HD float max_nan(float a, float b) { return (a != a || a > b) ? a : b; }

// ---- image transforms (imgproc/transforms.hpp's maths; the augmentation kernels of both
// backends call the same functions, so that a view made on the GPU is the CPU's to rounding)

FSAD_HD float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
/// ITU-R 601 luma, as torchvision's rgb_to_grayscale.
FSAD_HD float gray601(float r, float g, float b) { return 0.299f * r + 0.587f * g + 0.114f * b; }

/// Bilinear sample at (y, x) in pixel-centre coordinates of the plane whose value at row r,
/// column c is at(r, c) (a double; the caller returns 0 outside the plane).
template <class At>
FSAD_HD float sample_bilinear(const At& at, double y, double x) {
    const double fy = floor(y), fx = floor(x);
    const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
    const double ly = y - fy, lx = x - fx;
    return static_cast<float>((1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x0 + 1)) +
                              ly * ((1 - lx) * at(y0 + 1, x0) + lx * at(y0 + 1, x0 + 1)));
}
/// The same on a stored plane p (h x w), 0 outside.
FSAD_HD float sample_zero(const float* p, int64_t h, int64_t w, double y, double x) {
    return sample_bilinear([&](int64_t r, int64_t c) -> double { return (r < 0 || r >= h || c < 0 || c >= w) ? 0.0 : p[r * w + c]; },
                           y, x);
}

/// A crop (y0, x0, h, w) of an image plane (H x W) resized to out_h x out_w: output (y, x) is the
/// mean of ay x ax bilinear samples spread over its footprint (an area average when shrinking by
/// 2x or more, ay = max(1, floor(h / out_h / 2))), each clamped into the image (edge replication).
struct CropMap {
    double y0, x0, sy, sx;  // crop origin, crop size / output size
    int64_t ay, ax;         // samples per output pixel along y and x
};
FSAD_HD CropMap crop_map(double y0, double x0, double h, double w, int64_t out_h, int64_t out_w) {
    CropMap m;
    m.y0 = y0;
    m.x0 = x0;
    m.sy = h / static_cast<double>(out_h);
    m.sx = w / static_cast<double>(out_w);
    const int64_t ay = static_cast<int64_t>(floor(m.sy / 2)), ax = static_cast<int64_t>(floor(m.sx / 2));
    m.ay = ay > 1 ? ay : 1;
    m.ax = ax > 1 ? ax : 1;
    return m;
}
FSAD_HD float crop_at(const float* p, int64_t H, int64_t W, const CropMap& m, int64_t y, int64_t x) {
    double acc = 0;
    for (int64_t u = 0; u < m.ay; ++u)
        for (int64_t v = 0; v < m.ax; ++v) {
            double cy = m.y0 + (static_cast<double>(y) + (static_cast<double>(u) + 0.5) / static_cast<double>(m.ay)) * m.sy - 0.5;
            double cx = m.x0 + (static_cast<double>(x) + (static_cast<double>(v) + 0.5) / static_cast<double>(m.ax)) * m.sx - 0.5;
            cy = cy < 0.0 ? 0.0 : (cy > static_cast<double>(H - 1) ? static_cast<double>(H - 1) : cy);
            cx = cx < 0.0 ? 0.0 : (cx > static_cast<double>(W - 1) ? static_cast<double>(W - 1) : cx);
            acc += sample_zero(p, H, W, cy, cx);
        }
    return static_cast<float>(acc / static_cast<double>(m.ay * m.ax));
}

/// Rotation by `degrees` about the centre of an H x W image, counter-clockwise on screen for a
/// positive angle (torchvision's convention): output (y, x) reads the input at (sy, sx), bilinear,
/// 0 outside.
struct RotateMap {
    double cy, cx, ca, sa;
};
FSAD_HD RotateMap rotate_map(int64_t H, int64_t W, double degrees) {
    const double a = degrees * 3.14159265358979323846 / 180.0;
    return {(static_cast<double>(H) - 1) / 2, (static_cast<double>(W) - 1) / 2, cos(a), sin(a)};
}
FSAD_HD void rotate_source(const RotateMap& m, int64_t y, int64_t x, double& sy, double& sx) {
    const double dy = static_cast<double>(y) - m.cy, dx = static_cast<double>(x) - m.cx;
    sy = m.ca * dy + m.sa * dx + m.cy;
    sx = -m.sa * dy + m.ca * dx + m.cx;
}
FSAD_HD float rotate_at(const float* p, int64_t H, int64_t W, const RotateMap& m, int64_t y, int64_t x) {
    double sy, sx;
    rotate_source(m, y, x, sy, sx);
    return sample_zero(p, H, W, sy, sx);
}

/// A patch (plane p, ph x pw) placed at (oy, ox) on a zero canvas (ch x cw), then, if `rotated`,
/// the canvas rotated by m (bilinear, with the patch's footprint rotated alike): whether canvas
/// pixel (y, x) is covered (unrotated: inside the patch; rotated: the footprint's sample > 0.5)
/// and its value v. CutPaste pastes the covered pixels unrotated, the scar rotated.
FSAD_HD bool canvas_at(const float* p, int64_t ph, int64_t pw, int64_t ch, int64_t cw, int64_t oy, int64_t ox, bool rotated,
                       const RotateMap& m, int64_t y, int64_t x, float& v) {
    auto inside = [&](int64_t r, int64_t c) {
        return r >= 0 && r < ch && c >= 0 && c < cw && r >= oy && r < oy + ph && c >= ox && c < ox + pw;
    };
    if (!rotated) {
        if (!inside(y, x)) return false;
        v = p[(y - oy) * pw + (x - ox)];
        return true;
    }
    double sy, sx;
    rotate_source(m, y, x, sy, sx);
    const float mask = sample_bilinear([&](int64_t r, int64_t c) -> double { return inside(r, c) ? 1.0 : 0.0; }, sy, sx);
    if (!(mask > 0.5f)) return false;
    v = sample_bilinear([&](int64_t r, int64_t c) -> double { return inside(r, c) ? p[(r - oy) * pw + (c - ox)] : 0.0; }, sy, sx);
    return true;
}

FSAD_HD void rgb_to_hsv(float r, float g, float b, float& h, float& s, float& v) {
    const float mx = r > g ? (r > b ? r : b) : (g > b ? g : b), mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
    const float d = mx - mn;
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
    h -= floorf(h);
}
FSAD_HD void hsv_to_rgb(float h, float s, float v, float& r, float& g, float& b) {
    h = (h - floorf(h)) * 6.0f;
    const int i = static_cast<int>(h) % 6;
    const float f = h - floorf(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch (i) {
        case 0: r = v, g = t, b = p; break;
        case 1: r = q, g = v, b = p; break;
        case 2: r = p, g = v, b = t; break;
        case 3: r = p, g = q, b = v; break;
        case 4: r = t, g = p, b = v; break;
        default: r = v, g = p, b = q; break;
    }
}

/// The colour transforms of one pixel (r, g, b) in place; `mean` is the image's mean luma
/// (contrast only). Kinds as ops::ColourOp::Kind.
enum class Colour { None = 0, Brightness = 1, Contrast = 2, Saturation = 3, Hue = 4, Grayscale = 5 };
FSAD_HD void colour_pixel(Colour kind, float f, double mean, float& r, float& g, float& b) {
    switch (kind) {
        case Colour::None: return;
        case Colour::Brightness: r = clamp01(r * f), g = clamp01(g * f), b = clamp01(b * f); return;
        case Colour::Contrast:
            r = clamp01(static_cast<float>(mean + (r - mean) * f));
            g = clamp01(static_cast<float>(mean + (g - mean) * f));
            b = clamp01(static_cast<float>(mean + (b - mean) * f));
            return;
        case Colour::Saturation: {
            const float y = gray601(r, g, b);
            r = clamp01(y + (r - y) * f), g = clamp01(y + (g - y) * f), b = clamp01(y + (b - y) * f);
            return;
        }
        case Colour::Hue: {
            float h, s, v;
            rgb_to_hsv(r, g, b, h, s, v);
            hsv_to_rgb(h + f, s, v, r, g, b);
            return;
        }
        case Colour::Grayscale: r = g = b = gray601(r, g, b); return;
    }
}

/// The mirror border without the edge repeated (d c b | a b c d | c b a): torchvision's and
/// imgproc::gaussian_blur's 'reflect'.
FSAD_HD int64_t reflect101_index(int64_t i, int64_t n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

/// Ledoit-Wolf shrinkage intensity from the moments of centred samples Xc [n, d], as scikit-learn's
/// ledoit_wolf_shrinkage(X, assume_centered=False) (covariance/_shrunk_covariance.py): trace =
/// tr(S), frobenius = |S|_F^2 with S = Xc^T Xc / n, row_power = sum_i (sum_a Xc[i,a]^2)^2. The one
/// place the formula is written: each backend's density fit computes the moments its own way.
/// 0 when d == 1 or n <= 1. (Host only: a fit reads its moments back first.)
inline double ledoit_wolf_from_moments(double trace, double frobenius, double row_power, int64_t n, int64_t d) {
    if (d == 1 || n <= 1) return 0.0;
    const double nn = static_cast<double>(n), dd = static_cast<double>(d), mu = trace / dd;
    const double beta = (row_power / nn - frobenius) / (dd * nn);
    const double delta = (frobenius - 2.0 * mu * trace + dd * mu * mu) / dd;
    const double b = beta < delta ? beta : delta;
    return b == 0.0 ? 0.0 : b / delta;
}

}  // namespace fsad::math
