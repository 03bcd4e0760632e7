// The density model of the method: Ledoit-Wolf fit + Cholesky (512-d features, 50 and 500
// samples) and Mahalanobis scoring of 10,000 features, the cases of the PyTorch peer's
// --mode gauss (../shared/peers/torch_cpu_bench.py).
#include "common.hpp"

using namespace fsad;

namespace {
Tensor unit_rows(int64_t n, int64_t d, uint64_t seed) {
    Tensor x = Rng(seed).normal_tensor(Shape{n, d}, 0, 1);
    return ops::l2_normalize_forward(x, 1e-12f);
}

void density_fit(benchmark::State& st) {
    bench::set_threads_once();
    const int64_t n = st.range(0), d = st.range(1);
    Tensor x = unit_rows(n, d, 1);
    for (auto _ : st) {
        method::GaussianDensity g;
        g.fit(x);
        benchmark::DoNotOptimize(g.shrinkage());
    }
}

void density_score(benchmark::State& st) {
    bench::set_threads_once();
    const int64_t m = st.range(0), d = st.range(1), n_fit = st.range(2);
    method::GaussianDensity g;
    g.fit(unit_rows(n_fit, d, 2));
    Tensor y = unit_rows(m, d, 3);
    for (auto _ : st) {
        Tensor s = g.score(y);
        benchmark::DoNotOptimize(s.data());
    }
    bench::rate(st, "features/s", static_cast<double>(m));
}
}  // namespace

BENCHMARK(density_fit)->Args({50, 512})->Args({500, 512})->Unit(benchmark::kMillisecond)->UseRealTime();
// 10,000 features scored under a density fitted on 50 (low-rank form) and 500 (full factor) samples
BENCHMARK(density_score)->Args({10000, 512, 50})->Args({10000, 512, 500})->Unit(benchmark::kMillisecond)->UseRealTime();

namespace {
// patch-knn's greedy k-centre coreset: 50,000 rows of 128-d (a 10-shot fit's patches with their
// mirror images are 31,000-250,000 rows of 128-d), 10% kept. range(0): 0 isotropic Gaussian rows
// (distances concentrate: the hardest case for the triangle-inequality skip), 1 rows in 64
// clusters of spread 0.2 around unit-variance centres (patch features cluster by surface).
void greedy_coreset(benchmark::State& st) {
    bench::set_threads_once();
    const int64_t M = 50000, C = 128, m = 5000;
    Rng rng(7);
    Tensor x = rng.normal_tensor(Shape{M, C}, 0, 1);
    if (st.range(0) == 1) {
        const Tensor centres = rng.normal_tensor(Shape{64, C}, 0, 1);
        for (int64_t i = 0; i < M; ++i)
            for (int64_t k = 0; k < C; ++k)
                x.data()[i * C + k] = centres.data()[(i % 64) * C + k] + 0.2f * x.data()[i * C + k];
    }
    for (auto _ : st) benchmark::DoNotOptimize(method::greedy_coreset(x, m, 1).back());
    bench::rate(st, "rows/s", static_cast<double>(M));
}
}  // namespace

BENCHMARK(greedy_coreset)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();

namespace {
// One full fine-tuning step (BYOL + L_pp + L_np, Adam, EMA) of ResNet18 with BYOL's heads on
// random views: the peer's --mode byol.
void byol_step(benchmark::State& st) {
    bench::set_threads_once();
    const int64_t res = st.range(0), batch = st.range(1);
    method::ByolOptions o;
    o.batch = batch;
    o.negative = method::Negative::CutPaste;
    nn::BackboneConfig cfg{nn::BackboneKind::ResNet18};
    method::ByolTrainer tr(nn::make_backbone(cfg, 0), [&] { return nn::make_backbone(cfg, 1); }, o);
    Rng rng(1);
    Tensor x1 = rng.normal_tensor(Shape{batch, 3, res, res}, 0, 1), x2 = rng.normal_tensor(Shape{batch, 3, res, res}, 0, 1),
           xn = rng.normal_tensor(Shape{batch, 3, res, res}, 0, 1);
    std::vector<int64_t> perm(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) perm[static_cast<size_t>(i)] = (i + 1) % batch;
    tr.train_step(x1, x2, &xn, perm);  // warm-up
    for (auto _ : st) benchmark::DoNotOptimize(tr.train_step(x1, x2, &xn, perm).loss);
    bench::profile_if_asked("byol_step cpu " + std::to_string(res) + "/" + std::to_string(batch),
                            [&] { tr.train_step(x1, x2, &xn, perm); });
    bench::rate(st, "base_img/s", static_cast<double>(batch));
    bench::rate(st, "steps/s", 1.0);
}
}  // namespace

BENCHMARK(byol_step)->Args({64, 64})->Args({128, 64})->Unit(benchmark::kMillisecond)->UseRealTime();

namespace {
// One fine-tuning step's views on the CPU: 64 regular views at 224 px from 10 shots of 256 x 256
// (colour, blur, rotation as the defaults draw them), normalised. range(0) = 0: ByolTrainer's CPU
// path, augment() per view on the OpenMP threads, then normalized_batch; 1: the same draws applied
// by the batched image-set ops (augment_images, imagenet_normalize: what a GPU runs, here on the
// CPU's kernels).
void augment_views(benchmark::State& st) {
    bench::set_threads_once();
    const bool batched = st.range(0) == 1;
    const int64_t B = 64;
    std::vector<Tensor> shots;
    for (uint64_t i = 0; i < 10; ++i) shots.push_back(Rng(20 + i).uniform_tensor(Shape{3, 256, 256}, 0, 1));
    std::vector<ops::PackedImage> images;
    const Tensor packed = method::pack_images(shots, images);
    const method::AugmentOptions o;  // 224 px, the paper's policy
    uint64_t step = 0;
    for (auto _ : st) {
        ++step;
        if (batched) {
            std::vector<method::AugmentParams> p(static_cast<size_t>(B));
            for (int64_t i = 0; i < B; ++i) {
                Rng r(step * 1000 + static_cast<uint64_t>(i));
                p[static_cast<size_t>(i)] = method::sample_augment(256, 256, o, r);
                p[static_cast<size_t>(i)].crop.image = i % 10;
            }
            benchmark::DoNotOptimize(ops::imagenet_normalize(method::augment_images(packed, images, p)).data());
        } else {
            std::vector<Tensor> v(static_cast<size_t>(B));
#pragma omp parallel for schedule(dynamic)
            for (int64_t i = 0; i < B; ++i) {
                Rng r(step * 1000 + static_cast<uint64_t>(i));
                v[static_cast<size_t>(i)] = method::augment(shots[static_cast<size_t>(i % 10)], o, r);
            }
            benchmark::DoNotOptimize(method::normalized_batch(v).data());
        }
    }
    bench::rate(st, "views/s", static_cast<double>(B));
    st.SetLabel(batched ? "batched image-set ops" : "per view (ByolTrainer's CPU path)");
}
}  // namespace

BENCHMARK(augment_views)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();

namespace {
// The detector with each scorer (issue 19: "fit and scoring time per image for each scorer"):
// a fit on 10 shots and scoring 32 images, 224 px, MobileNetV2 (the default), no fine-tuning.
// range(0): scorer (0 global, 1 patch-gauss, 2 patch-knn, 3 patch-sum); range(1): the patch
// scorers' views (2: the default second view at 160 px, 1: --second-view 0; the global scorer has one).
Detector views_detector(const benchmark::State& st) {
    Detector det = bench::bench_detector(bench::kScorers[st.range(0)], nn::BackboneKind::MobileNetV2, Device::cpu(), 224);
    if (st.range(1) != 1) return det;
    DetectorConfig c = det.config();
    c.patch.second_view = 0;
    return Detector(c);
}
std::string views_label(const Detector& det) {
    return to_string(det.config().scorer) + (det.second_view() ? ", two views" : ", one view");
}

void detector_fit(benchmark::State& st) {
    bench::set_threads_once();
    const std::vector<Tensor> shots = bench::random_images(10, 224, 5);
    std::string label;
    for (auto _ : st) {
        Detector det = views_detector(st);
        det.fit(shots);
        benchmark::DoNotOptimize(det.threshold());
        label = views_label(det);
    }
    st.SetLabel(label);
}

void detector_score(benchmark::State& st) {
    bench::set_threads_once();
    Detector det = views_detector(st);
    det.fit(bench::random_images(10, 224, 5));
    const std::vector<Tensor> imgs = bench::random_images(32, 224, 6);
    det.score(imgs);  // warm-up (allocator, prepared convolutions)
    for (auto _ : st) benchmark::DoNotOptimize(det.score(imgs));
    bench::rate(st, "img/s", static_cast<double>(imgs.size()));
    st.SetLabel(views_label(det));
}
// (scorer, views): the global scorer; each patch scorer with the default two views; patch-sum with one
void detector_cases(benchmark::internal::Benchmark* b) {
    b->Args({0, 1})->Args({1, 2})->Args({2, 2})->Args({3, 2})->Args({3, 1});
}

// Tiles (DetectorConfig::tiles): patch-sum scoring 8 long images (224 x 1344, 6:1, native view)
// run whole or in tiles of 224 px (8 a view, overlapping by a quarter: 1.33x the pixels).
// range(0): 0 whole (--tiles off), 1 tiles of 224.
void detector_score_tiles(benchmark::State& st) {
    bench::set_threads_once();
    DetectorConfig c;
    c.scorer = Scorer::PatchSum;
    c.resolution = 224;
    c.view = View::Native;
    c.tiles = st.range(0) ? 224 : -1;
    Detector det(c);
    Rng rng(7);
    std::vector<Tensor> shots, imgs;
    for (int i = 0; i < 5; ++i) shots.push_back(rng.uniform_tensor(Shape{3, 224, 1344}, 0, 1));
    for (int i = 0; i < 8; ++i) imgs.push_back(rng.uniform_tensor(Shape{3, 224, 1344}, 0, 1));
    det.fit(shots);
    det.score(imgs);  // warm-up
    for (auto _ : st) benchmark::DoNotOptimize(det.score(imgs));
    bench::rate(st, "img/s", static_cast<double>(imgs.size()));
    st.SetLabel(st.range(0) ? "tiles of 224" : "whole");
}
}  // namespace

BENCHMARK(detector_fit)->Apply(detector_cases)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK(detector_score)->Apply(detector_cases)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(detector_score_tiles)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
