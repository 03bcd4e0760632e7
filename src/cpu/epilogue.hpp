// What a convolution does to its outputs as it writes them: y = act(y * scale[c] + shift[c] + r),
// r the matching element of an optional residual tensor of y's shape.
// A plain convolution has no scale, its bias (if any) as shift and no activation; the fused
// inference op conv2d_bn_eval_forward folds evaluation-mode BatchNorm and its activation in here,
// so the outputs are normalised while still in cache instead of in a second pass.
#pragma once
#include <cstdint>

#include "fsad/detail/math.hpp"

namespace fsad::cpu {

struct Epilogue {
    const float* scale = nullptr;  ///< per output channel, or null (1)
    const float* shift = nullptr;  ///< per output channel, or null (0)
    math::Activation act = math::Activation::Identity;
    const float* residual = nullptr;  ///< added before the activation: residual[i] for y_base[i]
    const float* y_base = nullptr;    ///< the output tensor's first element (where residual[0] goes)

    bool none() const { return !scale && !shift && act == math::Activation::Identity && !residual; }
    /// The value stored at `dst` (an element of y) for the sum v of output channel c.
    float operator()(float v, int64_t c, const float* dst) const {
        const float s = scale ? v * scale[c] : v;
        const float b = shift ? s + shift[c] : s;
        return math::activation(residual ? b + residual[dst - y_base] : b, act);
    }
    /// y[0..len) of output channel c, in place.
    void apply(float* y, int64_t len, int64_t c) const {
        if (none()) return;
        switch (act) {
            case math::Activation::ReLU: run<math::Activation::ReLU>(y, len, c); break;
            case math::Activation::ReLU6: run<math::Activation::ReLU6>(y, len, c); break;
            default: run<math::Activation::Identity>(y, len, c); break;
        }
    }

private:
    template <math::Activation A>
    void run(float* y, int64_t len, int64_t c) const {
        const float s = scale ? scale[c] : 1.0f, b = shift ? shift[c] : 0.0f;
        if (residual) {
            const float* r = residual + (y - y_base);
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) y[i] = math::activation(y[i] * s + b + r[i], A);
        } else if (scale) {
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) y[i] = math::activation(y[i] * s + b, A);
        } else {
#pragma omp simd
            for (int64_t i = 0; i < len; ++i) y[i] = math::activation(y[i] + b, A);
        }
    }
};

}  // namespace fsad::cpu
