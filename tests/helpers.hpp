// Test helpers: random tensors, tolerance comparison that prints the worst element, and a
// finite-difference gradient check (central differences on L = sum(f(x) * R), R fixed random).
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "fsad/fsad.hpp"

namespace fsad::test {

/// tests/data of the source tree the suite was built from, or $FSAD_TEST_DATA when set (binaries
/// run away from their source tree, e.g. carried to a GPU machine by scripts/gpu-bundle.sh).
inline std::string data_dir() {
    const char* env = std::getenv("FSAD_TEST_DATA");
    return env && *env ? std::string(env) : std::string(FSAD_TEST_DATA_DIR);
}

inline Tensor randn(const Shape& s, uint64_t seed, float std = 1.0f) { return Rng(seed).normal_tensor(s, 0.0f, std); }
inline Tensor randu(const Shape& s, uint64_t seed, float lo, float hi) { return Rng(seed).uniform_tensor(s, lo, hi); }
/// A fresh folder under the system's temporary directory, removed with everything in it.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& tag) {
        path = std::filesystem::temp_directory_path() / ("fsad_test_" + tag + "_" + std::to_string(::getpid()));
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

/// A grey striped texture [3,h,w] with noise; `scratch`: a bright diagonal line across it.
inline Tensor texture(uint64_t seed, bool scratch, int64_t h = 48, int64_t w = 48) {
    Rng rng(seed);
    Tensor t = Tensor::empty(Shape{3, h, w});
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
            float v = 0.5f + 0.1f * std::sin(0.5f * static_cast<float>(x)) + rng.normal(0.0f, 0.03f);
            if (scratch && std::llabs(x - y) < 2) v = 1.0f;
            for (int64_t c = 0; c < 3; ++c) t.data()[(c * h + y) * w + x] = std::clamp(v, 0.0f, 1.0f);
        }
    return t;
}

struct Diff {
    double max_abs = 0, max_rel = 0;
    int64_t worst = -1;
    float got = 0, want = 0;
    bool ok = true;
};
/// |got - want| <= atol + rtol*|want| elementwise.
inline Diff compare(const std::vector<float>& got, const std::vector<float>& want, double atol, double rtol) {
    Diff d;
    REQUIRE(got.size() == want.size());
    double worst_excess = -1e300;
    for (size_t i = 0; i < got.size(); ++i) {
        double e = std::fabs(static_cast<double>(got[i]) - want[i]);
        double lim = atol + rtol * std::fabs(static_cast<double>(want[i]));
        if (!std::isfinite(static_cast<double>(got[i])) && std::isfinite(static_cast<double>(want[i]))) e = 1e300;
        d.max_abs = std::max(d.max_abs, e);
        d.max_rel = std::max(d.max_rel, e / (std::fabs(static_cast<double>(want[i])) + 1e-12));
        if (e - lim > worst_excess) {
            worst_excess = e - lim;
            d.worst = static_cast<int64_t>(i);
            d.got = got[i];
            d.want = want[i];
        }
        if (e > lim) d.ok = false;
    }
    return d;
}

#define FSAD_CHECK_CLOSE(name, got_vec, want_vec, atol, rtol)                                               \
    do {                                                                                                    \
        auto _d = ::fsad::test::compare((got_vec), (want_vec), (atol), (rtol));                             \
        INFO((name) << ": max |diff| " << _d.max_abs << ", worst at " << _d.worst << " got " << _d.got        \
                  << " want " << _d.want << " (atol " << (atol) << ", rtol " << (rtol) << ")");             \
        CHECK(_d.ok);                                                                                       \
    } while (0)

/// Checks d/dx_i of L(x) = sum(f(x) . R) against central differences for every input that
/// needs_grad a gradient, on up to `samples` entries per input.
inline void gradcheck(const std::string& name, const std::function<Var(const std::vector<Var>&)>& f,
                      std::vector<Tensor> inputs, std::vector<bool> needs_grad = {}, double h = 1e-2,
                      double atol = 2e-3, double rtol = 2e-2, int samples = 48) {
    if (needs_grad.empty()) needs_grad.assign(inputs.size(), true);
    std::vector<Var> vars;
    for (size_t i = 0; i < inputs.size(); ++i) vars.emplace_back(inputs[i], needs_grad[i]);
    Var y = f(vars);
    Tensor R = randn(y.shape(), 999);
    auto loss = [&](const std::vector<Var>& vs) {
        NoGradGuard ng;
        std::vector<float> out = f(vs).value().to_vector(), r = R.to_vector();
        double s = 0;
        for (size_t k = 0; k < out.size(); ++k) s += static_cast<double>(out[k]) * r[k];
        return s;
    };
    y.backward(R);
    for (size_t i = 0; i < inputs.size(); ++i) {
        if (!needs_grad[i]) continue;
        REQUIRE_MESSAGE(vars[i].grad().defined(), name << ": input " << i << " received no gradient");
        std::vector<float> ana = vars[i].grad().to_vector();
        Rng pick(7 + i);
        int64_t n = inputs[i].numel();
        std::vector<float> got, want;
        for (int s = 0; s < std::min<int64_t>(samples, n); ++s) {
            int64_t k = n <= samples ? s : pick.integer(0, n - 1);
            float* p = inputs[i].data() + k;
            const float old = *p;
            *p = static_cast<float>(old + h);
            double lp = loss(vars);
            *p = static_cast<float>(old - h);
            double lm = loss(vars);
            *p = old;
            want.push_back(static_cast<float>((lp - lm) / (2 * h)));
            got.push_back(ana[static_cast<size_t>(k)]);
        }
        const std::string label = name + " d/dinput" + std::to_string(i);
        FSAD_CHECK_CLOSE(label, got, want, atol, rtol);
    }
}

}  // namespace fsad::test
