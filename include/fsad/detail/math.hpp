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
