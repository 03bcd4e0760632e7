// conv2d forward and backward (data + filter) at every ResNet18 layer shape (224 px input).
#include "common.hpp"

using namespace fsad;

namespace {
using bench::ConvShape;
using bench::kResNet18;

// ResNet18's 3x3 stride-1 layers at 64 px (the training step at 64 px): planes of 16, 8, 4, 2
const ConvShape kResNet18At64[] = {
    {"64px.layer1", 64, 64, 16, 3, 1, 1},
    {"64px.layer2", 128, 128, 8, 3, 1, 1},
    {"64px.layer3", 256, 256, 4, 3, 1, 1},
    {"64px.layer4", 512, 512, 2, 3, 1, 1},
};

void run_shape(benchmark::State& st, const ConvShape& s, bool backward, ops::ConvAlgorithm algo, bool prepared = false);

void run(benchmark::State& st, bool backward, ops::ConvAlgorithm algo = ops::ConvAlgorithm::Gemm) {
    run_shape(st, kResNet18[st.range(0)], backward, algo);
}
void run64(benchmark::State& st, bool backward, ops::ConvAlgorithm algo) {
    run_shape(st, kResNet18At64[st.range(0)], backward, algo);
}

void run_shape(benchmark::State& st, const ConvShape& s, bool backward, ops::ConvAlgorithm algo, bool prepared) {
    bench::set_threads_once();
    ops::set_conv_algorithm(algo);
    const int64_t n = st.range(1);
    ops::Conv2dParams p;
    p.stride_h = p.stride_w = s.stride;
    p.pad_h = p.pad_w = s.pad;
    Rng rng(1);
    Tensor x = rng.normal_tensor(Shape{n, s.cin, s.hw, s.hw}, 0, 1);
    Tensor w = rng.normal_tensor(Shape{s.cout, s.cin, s.k, s.k}, 0, 0.05f);
    Tensor y = ops::conv2d_forward(x, w, nullptr, p);
    Tensor dy = rng.normal_tensor(y.shape(), 0, 1);
    const double macs = static_cast<double>(y.numel()) * static_cast<double>(s.cin * s.k * s.k);
    // prepared: the inference op with weights prepared once (ops::PreparedConv) and an identity
    // batch norm, as a prepared model runs its convolutions
    const Tensor ones = Tensor::full(Shape{s.cout}, 1.0f), zeros = Tensor::zeros(Shape{s.cout});
    const ops::PreparedConv prep(w, p);
    for (auto _ : st) {
        if (prepared) {
            Tensor out = ops::conv2d_bn_eval_forward(x, w, ones, zeros, zeros, ones, 0.0f, p, math::Activation::Identity,
                                                     nullptr, &prep);
            benchmark::DoNotOptimize(out.data());
        } else if (backward) {
            Tensor dx, dw;
            ops::conv2d_backward(x, w, dy, p, &dx, &dw, nullptr);
            benchmark::DoNotOptimize(dw.data());
        } else {
            Tensor out = ops::conv2d_forward(x, w, nullptr, p);
            benchmark::DoNotOptimize(out.data());
        }
    }
    const double flop = 2.0 * macs * (backward ? 2.0 : 1.0);
    bench::rate(st, "GFLOP/s", flop * 1e-9);
    bench::rate(st, "img/s", static_cast<double>(n));
    st.SetLabel(s.name);
    ops::set_conv_algorithm(ops::ConvAlgorithm::Auto);
}

void conv_args(benchmark::internal::Benchmark* b) {
    for (int i = 0; i < static_cast<int>(std::size(kResNet18)); ++i) b->Args({i, 16});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
}  // namespace

// im2col + GEMM everywhere
BENCHMARK_CAPTURE(run, conv2d_forward, false)->Apply(conv_args);
BENCHMARK_CAPTURE(run, conv2d_backward, true)->Apply(conv_args);
// Winograd F(2x2,3x3) on the 3x3 stride-1 layers (GFLOP/s counts the direct algorithm's FLOPs)
BENCHMARK_CAPTURE(run, conv2d_forward_winograd, false, ops::ConvAlgorithm::Winograd)
    ->Args({1, 16})->Args({4, 16})->Args({7, 16})->Args({10, 16})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, conv2d_backward_winograd, true, ops::ConvAlgorithm::Winograd)
    ->Args({1, 16})->Args({4, 16})->Args({7, 16})->Args({10, 16})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, conv2d_forward_winograd4, false, ops::ConvAlgorithm::Winograd4)
    ->Args({1, 16})->Args({4, 16})->Args({7, 16})->Args({10, 16})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(run, conv2d_backward_winograd4, true, ops::ConvAlgorithm::Winograd4)
    ->Args({1, 16})->Args({4, 16})->Args({7, 16})->Args({10, 16})->Unit(benchmark::kMillisecond)->UseRealTime();
// The default (Auto: Winograd where src/cpu/conv.cpp says, im2col + GEMM elsewhere), every layer,
// batch 16 and (forward) batch 1
void auto_args(benchmark::internal::Benchmark* b) {
    for (int n : {1, 16})
        for (int i = 0; i < static_cast<int>(std::size(kResNet18)); ++i) b->Args({i, n});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(run, conv2d_forward_auto, false, ops::ConvAlgorithm::Auto)->Apply(auto_args);
// The 3x3 stride-1 layers at batch 1 under each algorithm (what Auto chooses between at batch 1)
void batch1_args(benchmark::internal::Benchmark* b) {
    for (int i : {1, 4, 7, 10}) b->Args({i, 1});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void run_prepared(benchmark::State& st, ops::ConvAlgorithm algo) {
    run_shape(st, kResNet18[st.range(0)], false, algo, true);
}
BENCHMARK_CAPTURE(run, conv2d_forward_b1_gemm, false, ops::ConvAlgorithm::Gemm)->Apply(batch1_args);
// every layer at batch 1 with prepared weights (what a prepared model runs), under Auto and GEMM
void prepared_args(benchmark::internal::Benchmark* b) {
    for (int i = 0; i < static_cast<int>(std::size(kResNet18)); ++i) b->Args({i, 1});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(run_prepared, conv2d_forward_prepared_auto, ops::ConvAlgorithm::Auto)->Apply(prepared_args);
BENCHMARK_CAPTURE(run_prepared, conv2d_forward_prepared_gemm, ops::ConvAlgorithm::Gemm)->Apply(prepared_args);
BENCHMARK_CAPTURE(run_prepared, conv2d_forward_prepared_winograd, ops::ConvAlgorithm::Winograd)->Apply(batch1_args);
BENCHMARK_CAPTURE(run_prepared, conv2d_forward_prepared_winograd4, ops::ConvAlgorithm::Winograd4)->Apply(batch1_args);
BENCHMARK_CAPTURE(run, conv2d_forward_b1_winograd, false, ops::ConvAlgorithm::Winograd)->Apply(batch1_args);
BENCHMARK_CAPTURE(run, conv2d_forward_b1_winograd4, false, ops::ConvAlgorithm::Winograd4)->Apply(batch1_args);
BENCHMARK_CAPTURE(run, conv2d_backward_auto, true, ops::ConvAlgorithm::Auto)->Apply(conv_args);
// 64 px shapes, batch 64: Auto (Winograd, and the dense matrix on 2x2 planes) against im2col + GEMM
void args64(benchmark::internal::Benchmark* b) {
    for (int i = 0; i < static_cast<int>(std::size(kResNet18At64)); ++i) b->Args({i, 64});
    b->Args({3, 8})->Args({3, 16});  // where the dense matrix starts to pay (conv.cpp: kDenseMinBatch)
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(run64, conv2d_forward_64px_auto, false, ops::ConvAlgorithm::Auto)->Apply(args64);
BENCHMARK_CAPTURE(run64, conv2d_backward_64px_auto, true, ops::ConvAlgorithm::Auto)->Apply(args64);
BENCHMARK_CAPTURE(run64, conv2d_forward_64px_gemm, false, ops::ConvAlgorithm::Gemm)->Apply(args64);
BENCHMARK_CAPTURE(run64, conv2d_backward_64px_gemm, true, ops::ConvAlgorithm::Gemm)->Apply(args64);
