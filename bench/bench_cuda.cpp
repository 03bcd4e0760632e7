// GPU benchmarks (built with the CUDA backend): cuDNN convolution forward and backward at every
// ResNet18 layer shape in FP32, TF32 and BF16, batch norm + ReLU and the linear layer, reported as
// TFLOP/s (and GB/s for batch norm) beside the device's FP32 peak; the fine-tuning step, feature
// extraction and scoring in FP32 and BF16. Each iteration ends with a device synchronise.
// bench/torch_gpu_bench.py measures the same with PyTorch (cudnn.benchmark; TF32 off, then on;
// bfloat16 tensors or autocast for BF16).
#include "common.hpp"

using namespace fsad;

namespace {
using bench::ConvShape;
using bench::kResNet18;
using benchmark::internal::Benchmark;
const Device kGpu = Device::cuda(0);

using bench::kSmoke;
// a smoke run's fine-tuning: ResNet18 at 1/8 width, small heads (the emulator runs a thread per
// element: the full network's 17M parameters make Adam and EMA alone take seconds there)
void smoke_size(method::ByolOptions& o, nn::BackboneConfig& cfg) {
    if (!kSmoke) return;
    cfg.width = 0.125f;
    o.hidden = 64;
    o.projection = 32;
}
// the argument lists of a full run or of a smoke run (one iteration each)
void sized(Benchmark* b, std::initializer_list<std::vector<int64_t>> full, std::initializer_list<std::vector<int64_t>> small,
           double min_time = 0) {
    for (const auto& a : kSmoke ? small : full) b->Args(a);
    if (kSmoke) b->Iterations(1);
    else if (min_time > 0) b->MinTime(min_time);
}

bool have_gpu(benchmark::State& st) {
    if (cuda_available()) return true;
    st.SkipWithError("no CUDA device");
    return false;
}

// ops::set_precision for one benchmark (its argument `arg`: 0 FP32, 1 TF32, 2 BF16), FP32 after
struct PrecisionArg {
    ops::Precision p;
    explicit PrecisionArg(int64_t arg) : p(static_cast<ops::Precision>(arg)) { ops::set_precision(p); }
    ~PrecisionArg() { ops::set_precision(ops::Precision::FP32); }
    const char* name() const { return ops::precision_name(p); }
};

void conv(benchmark::State& st, bool backward) {
    if (!have_gpu(st)) return;
    const ConvShape& s = kResNet18[st.range(0)];
    const int64_t n = st.range(1);
    const PrecisionArg prec(st.range(2));
    ops::Conv2dParams p;
    p.stride_h = p.stride_w = s.stride;
    p.pad_h = p.pad_w = s.pad;
    Rng rng(1);
    Tensor x = rng.normal_tensor(Shape{n, s.cin, s.hw, s.hw}, 0, 1).to(kGpu);
    Tensor w = rng.normal_tensor(Shape{s.cout, s.cin, s.k, s.k}, 0, 0.05f).to(kGpu);
    Tensor y = ops::conv2d_forward(x, w, nullptr, p);
    Tensor dy = Tensor::full(y.shape(), 0.01f, kGpu);
    Tensor dx, dw;
    ops::conv2d_backward(x, w, dy, p, &dx, &dw, nullptr);  // algorithm search outside the timing
    synchronize(kGpu);
    const double macs = static_cast<double>(y.numel()) * static_cast<double>(s.cin * s.k * s.k);
    for (auto _ : st) {
        if (backward) ops::conv2d_backward(x, w, dy, p, &dx, &dw, nullptr);
        else y = ops::conv2d_forward(x, w, nullptr, p);
        synchronize(kGpu);
    }
    bench::rate(st, "TFLOP/s", 2.0 * macs * (backward ? 2.0 : 1.0) * 1e-12);
    st.counters["FP32_peak_TFLOP/s"] = cuda_fp32_peak_tflops(0);
    st.SetLabel(std::string(s.name) + " " + prec.name());
}

void batchnorm_relu(benchmark::State& st) {
    if (!have_gpu(st)) return;
    const int64_t n = st.range(0), c = st.range(1), hw = st.range(2);
    Rng rng(2);
    Tensor x = rng.normal_tensor(Shape{n, c, hw, hw}, 0, 1).to(kGpu);
    Tensor g = Tensor::full(Shape{c}, 1.0f, kGpu), b = Tensor::zeros(Shape{c}, kGpu);
    Tensor rm = Tensor::zeros(Shape{c}, kGpu), rv = Tensor::full(Shape{c}, 1.0f, kGpu);
    ops::BatchNormSaved sv;
    for (auto _ : st) {
        Tensor y = ops::batchnorm_forward_train(x, g, b, rm, rv, 0.1f, 1e-5f, &sv, math::Activation::ReLU);
        Tensor dx, dg, db;
        ops::batchnorm_backward_train(x, g, sv, y, &dx, &dg, &db, &y, math::Activation::ReLU);
        synchronize(kGpu);
    }
    // forward reads x twice and writes y; backward reads x, y, dy twice and writes dx
    bench::rate(st, "GB/s", static_cast<double>(x.bytes()) * 10.0 * 1e-9);
}

void linear(benchmark::State& st) {
    if (!have_gpu(st)) return;
    const int64_t n = st.range(0), in = st.range(1), out = st.range(2);
    Rng rng(3);
    Tensor x = rng.normal_tensor(Shape{n, in}, 0, 1).to(kGpu), w = rng.normal_tensor(Shape{out, in}, 0, 0.05f).to(kGpu);
    for (auto _ : st) {
        Tensor y = ops::linear_forward(x, w, nullptr);
        synchronize(kGpu);
    }
    bench::rate(st, "TFLOP/s", 2.0 * static_cast<double>(n * in * out) * 1e-12);
}

// The full fine-tuning step (BYOL L_con + L_pp + L_np, Adam, EMA) of ResNet18 on the GPU; views
// are prepared once on the device (the peer times the same: its views are fixed tensors).
void byol_step(benchmark::State& st) {
    if (!have_gpu(st)) return;
    const int64_t res = st.range(0), batch = st.range(1);
    const PrecisionArg prec(st.range(2));
    method::ByolOptions o;
    o.batch = batch;
    o.negative = method::Negative::CutPaste;
    o.device = kGpu;
    nn::BackboneConfig cfg{nn::BackboneKind::ResNet18};
    smoke_size(o, cfg);
    method::ByolTrainer tr(nn::make_backbone(cfg, 1), [&] { return nn::make_backbone(cfg, 2); }, o);
    Rng rng(3);
    Tensor v1 = rng.normal_tensor(Shape{batch, 3, res, res}, 0, 1).to(kGpu);
    Tensor v2 = rng.normal_tensor(Shape{batch, 3, res, res}, 0, 1).to(kGpu);
    Tensor vn = rng.normal_tensor(Shape{batch, 3, res, res}, 0, 1).to(kGpu);
    std::vector<int64_t> perm(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) perm[static_cast<size_t>(i)] = (i + 1) % batch;
    tr.train_step(v1, v2, &vn, perm);  // algorithm search, allocator warm-up
    synchronize(kGpu);
    for (auto _ : st) {
        tr.train_step(v1, v2, &vn, perm);
        synchronize(kGpu);
    }
    bench::profile_if_asked("byol_step cuda " + std::to_string(res) + "/" + std::to_string(batch) + " " + prec.name(),
                            [&] { tr.train_step(v1, v2, &vn, perm); });
    bench::rate(st, "steps/s", 1.0);
    bench::rate(st, "img/s", static_cast<double>(batch));
    st.SetLabel(prec.name());
}

// Fine-tuning as `fit` runs it, from 10 shots of 256 px, FP32. range(2) says where each step's
// views come from: 2 made on the GPU (ByolOptions::augment_on_device, the default: the shots copied
// once, a few kernels per batch); 1 augmented on the CPU, the next step's prepared while the GPU
// runs this one (ByolOptions::prefetch); 0 augmented on the CPU, one step after the other. Issue
// 20's goal: range(2) = 2 at 90% or more of byol_step's FP32 rate at the same size.
void byol_fit(benchmark::State& st) {
    if (!have_gpu(st)) return;
    const int64_t res = st.range(0), batch = st.range(1);
    std::vector<Tensor> shots;
    for (uint64_t i = 0; i < 10; ++i) shots.push_back(Rng(20 + i).uniform_tensor(Shape{3, 256, 256}, 0, 1));
    method::ByolOptions o;
    o.batch = batch;
    o.augment.size = res;
    o.negative = method::Negative::CutPaste;
    o.device = kGpu;
    o.augment_on_device = st.range(2) == 2;
    o.prefetch = st.range(2) == 1 ? method::ByolOptions::Prefetch::On : method::ByolOptions::Prefetch::Off;
    nn::BackboneConfig cfg{nn::BackboneKind::ResNet18};
    smoke_size(o, cfg);
    int64_t steps = 0;
    for (auto _ : st) {
        st.PauseTiming();
        o.steps = kSmoke ? 2 : 6;
        method::ByolTrainer tr(nn::make_backbone(cfg, 1), [&] { return nn::make_backbone(cfg, 2); }, o);
        tr.step(shots);  // algorithm search, allocator warm-up
        synchronize(kGpu);
        st.ResumeTiming();
        tr.fit(shots);
        synchronize(kGpu);
        steps += o.steps - 1;
    }
    st.counters["steps/s"] = benchmark::Counter(static_cast<double>(steps), benchmark::Counter::kIsRate);
    st.SetLabel(st.range(2) == 2 ? "views made on the GPU" : st.range(2) == 1 ? "CPU views prefetched" : "CPU views in turn");
}

// Scoring throughput of a fitted detector from host images (224 px inputs: the resize is a copy).
// range(0): images per call, range(1): precision, range(2): scorer (0 global, 1 patch-gauss,
// 2 patch-knn, 3 patch-sum), range(3): backbone (0 ResNet18: the first GPU run's case; 1 MobileNetV2, the default).
// The patch scorers compute the stage maps on the GPU and score the patches on the host.
void detector_score(benchmark::State& st) {
    if (!have_gpu(st)) return;
    const int64_t n = st.range(0);
    const PrecisionArg prec(st.range(1));
    const Scorer sc = bench::kScorers[st.range(2)];
    const nn::BackboneKind bb = st.range(3) ? nn::BackboneKind::MobileNetV2 : nn::BackboneKind::ResNet18;
    const int64_t res = kSmoke ? 32 : 224;
    Detector det = bench::bench_detector(sc, bb, kGpu, res);
    det.fit(bench::random_images(5, res, 4));
    const std::vector<Tensor> imgs = bench::random_images(n, res, 5);
    det.score(imgs);
    for (auto _ : st) benchmark::DoNotOptimize(det.score(imgs));
    const std::string what = nn::to_string(bb) + " " + to_string(sc) + " " + prec.name();
    bench::profile_if_asked("detector score cuda " + std::to_string(res) + "/" + std::to_string(n) + " " + what,
                            [&] { det.score(imgs); }, 1);
    bench::rate(st, "img/s", static_cast<double>(n));
    st.SetLabel(what);
}

// A 10-shot fit on the GPU (no fine-tuning), per scorer, MobileNetV2 224 px: range(0) scorer.
void detector_fit(benchmark::State& st) {
    if (!have_gpu(st)) return;
    const Scorer sc = bench::kScorers[st.range(0)];
    const int64_t res = kSmoke ? 32 : 224;
    const std::vector<Tensor> shots = bench::random_images(kSmoke ? 3 : 10, res, 4);
    bench::bench_detector(sc, nn::BackboneKind::MobileNetV2, kGpu, res).fit(shots);  // cuDNN's search, allocator
    for (auto _ : st) {
        Detector det = bench::bench_detector(sc, nn::BackboneKind::MobileNetV2, kGpu, res);
        det.fit(shots);
        benchmark::DoNotOptimize(det.threshold());
    }
    st.SetLabel(to_string(sc));
}

// The backbone alone on device-resident images (what the peer's "resnet18 features" line times):
// with detector_score beside it, the share of the detector's pipeline spent off the GPU
// (preprocessing, normalisation, the host-to-device copy) shows.
void infer_cuda(benchmark::State& st) {
    if (!have_gpu(st)) return;
    const int64_t res = st.range(0), batch = st.range(1);
    const PrecisionArg prec(st.range(2));
    auto net = nn::make_backbone({nn::BackboneKind::ResNet18}, 0);
    net->to(kGpu);
    net->eval();
    Tensor x = Rng(1).normal_tensor(Shape{batch, 3, res, res}, 0, 1).to(kGpu);
    {
        NoGradGuard ng;
        net->forward(Var(x));  // algorithm search, allocator warm-up
    }
    synchronize(kGpu);
    for (auto _ : st) {
        NoGradGuard ng;
        Tensor f = net->forward(Var(x)).value();
        synchronize(kGpu);
    }
    bench::profile_if_asked("infer cuda resnet18 " + std::to_string(res) + "/" + std::to_string(batch) + " " + prec.name(), [&] {
        NoGradGuard ng;
        net->forward(Var(x));
    });
    bench::rate(st, "img/s", static_cast<double>(batch));
    st.SetLabel(prec.name());
}

// Host-to-device copy of a batch of 224 px images from ordinary (pageable) memory, as the
// detector's features() does it: staged through fsad's pinned buffers (the default from 8 MiB)
// or, with range(1) = 0, the driver's pageable copy.
void copy_to_gpu(benchmark::State& st) {
    if (!have_gpu(st)) return;
    setenv("FSAD_CUDA_STAGED_COPY", st.range(1) ? "1" : "0", 1);
    Tensor h = Tensor::full(Shape{st.range(0), 3, 224, 224}, 0.5f);
    Tensor d = h.to(kGpu);
    for (auto _ : st) {
        d = h.to(kGpu);
        synchronize(kGpu);
    }
    unsetenv("FSAD_CUDA_STAGED_COPY");
    bench::rate(st, "GB/s", static_cast<double>(h.bytes()) * 1e-9);
    st.SetLabel(st.range(1) ? "staged" : "pageable");
}

void conv_args(Benchmark* b) {
    for (int prec : {0, 1, 2})  // FP32, TF32, BF16
        for (int i = 0; i < static_cast<int>(std::size(kResNet18)); ++i) b->Args({i, kSmoke ? 1 : 64, prec});
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
    if (kSmoke) b->Iterations(1);
}
void batchnorm_args(Benchmark* b) { sized(b, {{64, 64, 112}, {64, 256, 14}}, {{2, 8, 16}}); }
void byol_step_args(Benchmark* b) { sized(b, {{224, 64, 0}, {224, 64, 1}, {224, 64, 2}}, {{32, 4, 0}, {32, 4, 2}}, 2.0); }
void byol_fit_args(Benchmark* b) {
    sized(b, {{224, 64, 2}, {224, 64, 1}, {224, 64, 0}}, {{32, 4, 2}, {32, 4, 1}, {32, 4, 0}});
    b->Iterations(1);
}
void detector_score_args(Benchmark* b) {
    sized(b, {{512, 0, 0, 0}, {512, 2, 0, 0}, {512, 0, 0, 1}, {512, 0, 1, 1}, {512, 0, 2, 1}, {512, 0, 3, 1}, {512, 2, 1, 1}},
          {{3, 0, 0, 0}, {3, 2, 0, 0}, {3, 0, 1, 1}, {3, 0, 2, 1}, {3, 0, 3, 1}}, 1.0);
}
void detector_fit_args(Benchmark* b) {
    sized(b, {{0}, {1}, {2}, {3}}, {{1}, {2}, {3}});
    b->Iterations(kSmoke ? 1 : 3);
}
void infer_args(Benchmark* b) { sized(b, {{224, 512, 0}, {224, 512, 1}, {224, 512, 2}}, {{32, 2, 0}, {32, 2, 2}}, 1.0); }
void copy_args(Benchmark* b) { sized(b, {{256, 1}, {256, 0}}, {{16, 1}, {16, 0}}); }  // 16 images: 9.6 MB, staged
void linear_args(Benchmark* b) { sized(b, {{128, 512, 4096}, {128, 4096, 256}}, {{8, 64, 128}}); }
}  // namespace

BENCHMARK_CAPTURE(conv, cuda_conv2d_forward, false)->Apply(conv_args);
BENCHMARK_CAPTURE(conv, cuda_conv2d_backward, true)->Apply(conv_args);
BENCHMARK(batchnorm_relu)->Apply(batchnorm_args)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(byol_step)->Apply(byol_step_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(byol_fit)->Apply(byol_fit_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(detector_score)->Apply(detector_score_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(detector_fit)->Apply(detector_fit_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(infer_cuda)->Apply(infer_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(copy_to_gpu)->Apply(copy_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(linear)->Apply(linear_args)->Unit(benchmark::kMicrosecond)->UseRealTime();
