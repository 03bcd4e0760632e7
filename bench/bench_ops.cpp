// The op table of the tests (tests/op_cases.cpp) as benchmarks, as ggml's test-backend-ops has a
// perf mode: each case's op forward and, where it has one, backward, per call, on the CPU
// (fsad_bench) or on the GPU (fsad_bench_cuda, compiled with FSAD_BENCH_OPS_CUDA), named
// "ops/<op> <case>/<device>". The cases have the tests' small shapes, so the times are mostly
// per-op overhead (checks, dispatch, allocation, kernel launches): where a change adds some, it
// shows here for every op. Throughput at model sizes is bench_conv's and bench_cuda's.
#include "../tests/op_cases.hpp"
#include "common.hpp"

using namespace fsad;

namespace {
#ifdef FSAD_BENCH_OPS_CUDA
const Device kDevice = Device::cuda(0);
#else
const Device kDevice = Device::cpu();
#endif

void run(benchmark::State& st, const test::OpCase& c) {
    bench::set_threads_once();
    if (kDevice.is_cuda() && !cuda_available()) {
        st.SkipWithError("no CUDA device");
        return;
    }
    const std::vector<Var> v = test::vars_on(c, kDevice);
    const Var y0 = c.run(v);  // outside the timing: cuDNN's algorithm search, the allocator's first sizes
    const Tensor dy = test::output_grad(y0.shape(), kDevice);
    for (auto _ : st) {
        const Var y = c.run(v);
        if (c.differentiable()) y.backward(dy);  // (the inputs' gradients accumulate: one more pass each)
        if (kDevice.is_cuda()) synchronize(kDevice);
    }
}

const bool kRegistered = [] {
    for (const test::OpCase& c : test::op_cases()) {
        benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(
            ("ops/" + c.name() + "/" + kDevice.str()).c_str(), [c](benchmark::State& st) { run(st, c); });
        b->Unit(benchmark::kMicrosecond)->UseRealTime();
        if (bench::kSmoke) b->Iterations(1);
    }
    return true;
}();
}  // namespace
