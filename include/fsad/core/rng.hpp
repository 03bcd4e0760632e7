// Seeded random numbers. Every random choice in fsad takes an Rng, so a seed fixes a run.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>

#include "fsad/core/tensor.hpp"

namespace fsad {

class Rng {
public:
    explicit Rng(uint64_t seed = 0) : gen_(seed) {}
    float uniform(float lo = 0.0f, float hi = 1.0f) {
        return lo + (hi - lo) * static_cast<float>(std::uniform_real_distribution<double>(0.0, 1.0)(gen_));
    }
    float normal(float mean = 0.0f, float std = 1.0f) {
        return mean + std * static_cast<float>(std::normal_distribution<double>(0.0, 1.0)(gen_));
    }
    int64_t integer(int64_t lo, int64_t hi_inclusive) {
        return std::uniform_int_distribution<int64_t>(lo, hi_inclusive)(gen_);
    }
    bool bernoulli(float p) { return uniform() < p; }
    std::mt19937_64& engine() { return gen_; }

    /// Tensor of `shape` on the CPU filled from U(lo, hi) / N(mean, std).
    Tensor uniform_tensor(const Shape& shape, float lo, float hi) {
        Tensor t = Tensor::empty(shape);
        float* p = t.data();
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = uniform(lo, hi);
        return t;
    }
    Tensor normal_tensor(const Shape& shape, float mean, float std) {
        Tensor t = Tensor::empty(shape);
        float* p = t.data();
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = normal(mean, std);
        return t;
    }

private:
    std::mt19937_64 gen_;
};

}  // namespace fsad
