// Whole-model benchmarks: ResNet18 / MobileNetV2 inference and the ResNet18 training step
// (forward, loss, backward, Adam), the same cases as the PyTorch peer
// (../shared/peers/torch_cpu_bench.py --mode infer / train).
#include "common.hpp"

using namespace fsad;

namespace {
// `prepared`: the weights prepared once for inference (nn::Module::prepare_inference, what
// fsad::Detector does after fitting) instead of repacked on every call.
void infer_with(benchmark::State& st, nn::BackboneKind kind, bool prepared) {
    bench::set_threads_once();
    const int64_t res = st.range(0), batch = st.range(1);
    auto net = nn::make_backbone({kind}, 0);
    net->eval();
    if (prepared) net->prepare_inference();
    Tensor x = Rng(1).normal_tensor(Shape{batch, 3, res, res}, 0, 1);
    {
        NoGradGuard ng;
        net->forward(Var(x));  // warm-up
    }
    for (auto _ : st) {
        NoGradGuard ng;
        Tensor f = net->forward(Var(x)).value();
        benchmark::DoNotOptimize(f.data());
    }
    bench::rate(st, "img/s", static_cast<double>(batch));
    bench::rate(st, "GFLOP/s", 2e-9 * bench::forward_macs_per_image(*net, res) * static_cast<double>(batch));
}

void infer(benchmark::State& st, nn::BackboneKind kind) { infer_with(st, kind, false); }
void infer_prepared(benchmark::State& st, nn::BackboneKind kind) { infer_with(st, kind, true); }

void train_step(benchmark::State& st) {
    bench::set_threads_once();
    const int64_t res = st.range(0), batch = st.range(1);
    // ResNet18 with its 1000-way classifier and cross-entropy, as the peer; fsad's backbone
    // returns the pooled feature, the head is a Linear + a fixed-target loss of the same cost.
    auto net = nn::make_backbone({nn::BackboneKind::ResNet18}, 0);
    Rng rng(2);
    nn::Linear fc(512, 1000, rng);
    fc.flatten();
    net->train();
    nn::Adam opt(*net, {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f});
    nn::Adam opt_fc(fc, {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f});
    Tensor x = rng.normal_tensor(Shape{batch, 3, res, res}, 0, 1);
    Tensor target = rng.normal_tensor(Shape{batch, 1000}, 0, 1);
    auto step = [&] {
        opt.zero_grad();
        opt_fc.zero_grad();
        Var logits = fc.forward(net->forward(Var(x)));
        ag::mean(ag::mul(logits, Var(target))).backward();
        opt.step();
        opt_fc.step();
    };
    step();  // warm-up: first-touch page faults and cache fills are not part of a step
    reset_peak_stats(Device::cpu());
    for (auto _ : st) step();
    bench::profile_if_asked("train_step cpu " + std::to_string(res) + "/" + std::to_string(batch), step);
    const double macs = bench::forward_macs_per_image(*net, res) + 512.0 * 1000.0;
    bench::rate(st, "img/s", static_cast<double>(batch));
    bench::rate(st, "GFLOP/s", 3 * 2e-9 * macs * static_cast<double>(batch));
    st.counters["peak_MiB"] = static_cast<double>(allocator_stats(Device::cpu()).peak_bytes_in_use) / (1 << 20);
}
}  // namespace

BENCHMARK_CAPTURE(infer, resnet18, nn::BackboneKind::ResNet18)
    ->Args({224, 1})->Args({224, 32})->Args({64, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(infer, mobilenetv2, nn::BackboneKind::MobileNetV2)
    ->Args({224, 1})->Args({224, 32})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(infer_prepared, resnet18, nn::BackboneKind::ResNet18)
    ->Args({224, 1})->Args({224, 32})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(infer_prepared, mobilenetv2, nn::BackboneKind::MobileNetV2)
    ->Args({224, 1})->Args({224, 32})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(train_step)->Args({224, 16})->Args({64, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
