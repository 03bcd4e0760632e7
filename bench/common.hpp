// Shared helpers for the Google Benchmark suites. FLOPs count 2 per multiply-add (as sgemm's
// 2*M*N*K and the PyTorch peer's "gflops"). Thread count: --threads via FSAD_BENCH_THREADS
// (default 2, the CI machine's and the peer comparison's setting).
#pragma once
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "fsad/fsad.hpp"

namespace fsad::bench {

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

/// Multiply-adds of one image's forward pass (conv + linear), counted like the peer's hooks.
inline double count_macs(nn::Backbone& net, int64_t res) {
    (void)net;
    (void)res;
    return 0;  // filled by the model benchmarks from the conv geometry (see bench_models.cpp)
}

}  // namespace fsad::bench
