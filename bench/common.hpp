// Shared helpers for the Google Benchmark suites. FLOPs count 2 per multiply-add (as sgemm's
// 2*M*N*K and the PyTorch peer's "gflops"); training counts 3x the forward, as the peer does.
// Threads: FSAD_BENCH_THREADS (default 2, the CI machine's and the peer comparison's setting).
#pragma once
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include "fsad/fsad.hpp"

namespace fsad::bench {

/// The BLAS kernels in the JSON output's context (and the console header): results from
/// OpenBLAS's generic fallback are not comparable with its AVX-512 kernels' (parallel.hpp).
inline const bool kBlasContext = [] {
    const BlasInfo b = blas_info();
    benchmark::AddCustomContext("blas", b.core + " kernels, chosen by " + b.chosen_by + "; " + b.library);
    return true;
}();

/// Convolutions of ResNet18 at 224 px (input spatial size hw is before the stride).
struct ConvShape {
    const char* name;
    int64_t cin, cout, hw, k;
    int stride, pad;
};
// input spatial size hw is before the stride
inline const ConvShape kResNet18[] = {
    {"conv1", 3, 64, 224, 7, 2, 3},          {"layer1", 64, 64, 56, 3, 1, 1},
    {"layer2.0.conv1", 64, 128, 56, 3, 2, 1}, {"layer2.ds", 64, 128, 56, 1, 2, 0},
    {"layer2", 128, 128, 28, 3, 1, 1},        {"layer3.0.conv1", 128, 256, 28, 3, 2, 1},
    {"layer3.ds", 128, 256, 28, 1, 2, 0},     {"layer3", 256, 256, 14, 3, 1, 1},
    {"layer4.0.conv1", 256, 512, 14, 3, 2, 1}, {"layer4.ds", 256, 512, 14, 1, 2, 0},
    {"layer4", 512, 512, 7, 3, 1, 1},
};

/// FSAD_BENCH_SMOKE=1: every benchmark once, at a small size. CI runs the GPU suite so on the CUDA
/// emulator (FSAD_CUDA=EMULATED), so that its code has run before a GPU's minutes are spent on it,
/// and the op table's benchmarks so on the CPU (ctest bench_ops).
inline const bool kSmoke = [] {
    const char* e = std::getenv("FSAD_BENCH_SMOKE");
    return e && *e && *e != '0';
}();

inline int bench_threads() {
    const char* e = std::getenv("FSAD_BENCH_THREADS");
    return e ? std::atoi(e) : 2;
}

inline void set_threads_once() {
    static bool done = false;
    if (!done) {
        set_num_threads(bench_threads());
        done = true;
    }
}

/// Multiply-adds of one image's forward pass (convolutions and linear layers).
inline double forward_macs_per_image(nn::Module& net, int64_t res) {
    NoGradGuard ng;
    const bool was_training = net.is_training();
    net.eval();
    ops::MacCounter mc;
    net.forward(Var(Tensor::zeros(Shape{1, 3, res, res})));
    net.train(was_training);
    return mc.macs();
}

/// With FSAD_BENCH_PROFILE=<file>: runs `step` `reps` more times under an ops::Profiler and
/// appends its per-op table, headed by `label`, to the file (once per label: Google Benchmark
/// calls a benchmark several times). Outside the timed loop; costs nothing when unset.
template <class F>
void profile_if_asked(const std::string& label, F&& step, int reps = 3) {
    const char* path = std::getenv("FSAD_BENCH_PROFILE");
    static std::set<std::string> done;
    if (!path || !*path || !done.insert(label).second) return;
    ops::Profiler prof;
    for (int i = 0; i < reps; ++i) step();
    const std::string table = prof.table();
    std::ofstream f(path, std::ios::app);
    f << "== " << label << ": ops over " << reps << " iterations\n" << table << "\n";
}

/// The scorers the detector benchmarks compare (argument index -> scorer).
inline constexpr Scorer kScorers[] = {Scorer::Global, Scorer::PatchGauss, Scorer::PatchKnn, Scorer::PatchSum};

/// A detector as `fsad fit` makes it with only the weights given (the default backbone, no
/// fine-tuning, mirrored shots decided from the shots), random weights (the speed is the same)
/// and the scorer fixed, not chosen: fitted on `shots` random res x res images on `dev`.
inline Detector bench_detector(Scorer scorer, nn::BackboneKind backbone, Device dev, int64_t res) {
    DetectorConfig c;
    c.backbone = backbone;
    c.scorer = scorer;
    c.resolution = res;
    c.device = dev;
    return Detector(c);
}
/// `n` random res x res images in [0, 1] (seeded).
inline std::vector<Tensor> random_images(int64_t n, int64_t res, uint64_t seed) {
    Rng rng(seed);
    std::vector<Tensor> out;
    for (int64_t i = 0; i < n; ++i) out.push_back(rng.uniform_tensor(Shape{3, res, res}, 0, 1));
    return out;
}

inline void rate(benchmark::State& st, const char* name, double per_iteration) {
    st.counters[name] = benchmark::Counter(per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace fsad::bench
