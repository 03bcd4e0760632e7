// Comparison against PyTorch fixtures that hold float64 results and PyTorch's own float32
// deviation from them ("torch32dev.<key>"), written by tools/make_golden.py and friends.
#pragma once
#include "helpers.hpp"

namespace fsad::test {

// Every fixture result is PyTorch's float64 value, with PyTorch's own float32 deviation from it
// ("torch32dev.*"). fsad (float32) must stay within 4x that deviation plus 1e-6 of the
// tensor's scale. Rounding noise dominates where a true value is ~0 (a BatchNorm bias whose
// output the next train-mode BatchNorm renormalises has an exactly-zero true gradient), and
// after Adam steps (Adam divides by the gradient's RMS, so noise-only elements move by ~lr).
// One float32 run's deviation is itself a noisy estimate of the noise floor, hence 4x; a real
// error (a wrong formula, a missed term) is orders of magnitude above it.
// After Adam steps rounding noise is amplified chaotically (see above): the largest deviation
// is a heavy-tailed statistic, and fsad's summation orders differ from all of PyTorch's, so the
// allowance is wider (16x; measured worst cases 2-9x). Wrong Adam hyper-parameters or update
// formulas give errors far above it: beta2 0.999 for 0.99 gives ~1500x, lr +2% ~14000x
// (tests/test_golden.cpp, "golden: a wrong Adam is caught").
constexpr double kAfterAdam = 16.0;
inline double g_worst_ratio = 0;  // largest |fsad - ref| / PyTorch float32 deviation since the last reset
inline bool g_dry_run = false;  // record ratios only (used to show that a wrong Adam fails the check)
inline std::string g_worst_name;

/// `floor`: a lower bound for the noise estimate where it is known to be underestimated (an EMA
/// target inherits (1 - beta) of the online network's error per step).
inline void check_vs_reference(const std::string& name, const Tensor& got, const io::SafeTensors& fx, const std::string& key,
                               double factor = 4.0, double floor = 0.0) {
    const Tensor& want = fx.tensors.at(key);
    REQUIRE(got.shape() == want.shape());
    const double torch_dev = std::max(static_cast<double>(fx.tensors.at("torch32dev." + key).item()), floor);
    std::vector<float> g = got.to_vector(), w = want.to_vector();
    double worst = 0, scale = 0;
    for (size_t i = 0; i < g.size(); ++i) {
        worst = std::max(worst, std::fabs(static_cast<double>(g[i]) - w[i]));
        scale = std::max(scale, std::fabs(static_cast<double>(w[i])));
    }
    const double limit = factor * torch_dev + 1e-6 * scale + 1e-9;
    const double ratio = worst / (torch_dev + 1e-6 * scale + 1e-9);
    if (ratio > g_worst_ratio) {
        g_worst_ratio = ratio;
        g_worst_name = name;
    }
    if (g_dry_run) return;
    INFO(name << ": max |fsad - float64 reference| " << worst << ", PyTorch float32's " << torch_dev << ", limit "
              << limit);
    CHECK(worst <= limit);
}

}  // namespace fsad::test
