// ImageNet MobileNetV2 weights from ../shared/weights: the eval-mode features of the reference
// inputs must match those PyTorch computed from the same file (README there: ~1e-4 relative).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "fsad/detail/py_random.hpp"
#include "fsad/fsad.hpp"

using namespace fsad;

TEST_CASE("[shared] MobileNetV2 ImageNet weights reproduce PyTorch's reference features") {
    const std::string dir = FSAD_SHARED_DIR "/weights";
    const std::string w = dir + "/mobilenetv2_imagenet.safetensors";
    if (!std::filesystem::exists(w)) {
        MESSAGE("skipped: " << w << " not found");
        return;
    }
    auto net = nn::load_backbone({nn::BackboneKind::MobileNetV2}, w);
    CHECK(net->config().first_block_expand);
    CHECK(net->config().activation == math::Activation::ReLU);
    net->eval();
    Tensor x = io::read_npy(dir + "/reference_inputs.npy");
    Tensor ref = io::read_npy(dir + "/reference_features.npy");
    REQUIRE(x.shape() == Shape{4, 3, 224, 224});
    REQUIRE(ref.shape() == Shape{4, 1280});
    NoGradGuard ng;
    Tensor f = net->forward(Var(x)).value();
    REQUIRE(f.shape() == ref.shape());
    std::vector<float> a = f.to_vector(), b = ref.to_vector();
    double num = 0, den = 0, worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
        den += static_cast<double>(b[i]) * b[i];
        worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
    }
    const double rel = std::sqrt(num / den);
    MESSAGE("relative L2 error " << rel << ", max abs error " << worst);
    CHECK(rel < 2e-4);
    CHECK(worst < 1e-3 * std::sqrt(den / static_cast<double>(b.size())) * 10);
}

TEST_CASE("[shared] the real checkpoint is refused under the wrong architecture") {
    const std::string w = FSAD_SHARED_DIR "/weights/mobilenetv2_imagenet.safetensors";
    if (!std::filesystem::exists(w)) return;
    CHECK_THROWS_WITH_AS(nn::load_backbone({nn::BackboneKind::ResNet18}, w), doctest::Contains("missing key"),
                         FormatError);
}


namespace {
std::vector<std::string> jpgs(const std::filesystem::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().extension() == ".jpg") out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
}
}  // namespace

// The no-adaptation setting on Magnetic Tile with the protocol of ../shared/peers/mt_reference.py:
// shots drawn with random.Random(seed).sample(sorted MT_Free jpgs, k), seeds 0-2; test = the other
// MT_Free images + all defect images; RGB, bilinear (anti-aliased) resize to 224x224, ImageNet
// normalisation, MobileNetV2 features, L2 normalisation, Ledoit-Wolf Gaussian, Mahalanobis.
// The PyTorch reference gets 67.5 (5-shot) and 71.6 (10-shot) mean AUROC over the 3 seeds.
TEST_CASE("[shared] Magnetic Tile no-adaptation baseline reproduces the PyTorch reference") {
    const std::filesystem::path root = FSAD_SHARED_DIR "/data/magnetic-tile";
    const std::string w = FSAD_SHARED_DIR "/weights/mobilenetv2_imagenet.safetensors";
    if (!std::filesystem::exists(root) || !std::filesystem::exists(w)) {
        MESSAGE("skipped: " << root << " or the MobileNetV2 weights not found");
        return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::string> free = jpgs(root / "MT_Free" / "Imgs"), defect;
    for (const auto& d : std::filesystem::directory_iterator(root))
        if (d.is_directory() && d.path().filename().string().rfind("MT_", 0) == 0 && d.path().filename() != "MT_Free")
            for (const auto& p : jpgs(d.path() / "Imgs")) defect.push_back(p);
    REQUIRE(free.size() == 952);
    REQUIRE(defect.size() == 392);
    auto net = nn::load_backbone({nn::BackboneKind::MobileNetV2}, w);
    net->eval();
    // features of every image once, in batches
    std::vector<std::string> all = free;
    all.insert(all.end(), defect.begin(), defect.end());
    std::vector<Tensor> feats(all.size());
    const size_t bs = 32;
    for (size_t b = 0; b < all.size(); b += bs) {
        const size_t e = std::min(all.size(), b + bs);
        std::vector<Tensor> imgs(e - b);
#pragma omp parallel for schedule(dynamic)
        for (size_t i = b; i < e; ++i)
            imgs[i - b] = io::imagenet_normalize(io::resize_antialias(io::load_image(all[i]), 224, 224)).reshape(Shape{1, 3, 224, 224});
        NoGradGuard ng;
        Tensor f = net->forward(Var(ops::concat(imgs, 0))).value();
        for (size_t i = b; i < e; ++i) feats[i] = f.slice(static_cast<int64_t>(i - b), static_cast<int64_t>(i - b + 1)).clone();
    }
    const double extract_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (auto [k, want] : {std::pair<int64_t, double>{5, 67.5}, {10, 71.6}}) {
        double sum = 0;
        std::vector<double> per_seed;
        for (uint64_t seed = 0; seed < 3; ++seed) {
            std::vector<int64_t> shots = eval::PyRandom(seed).sample(static_cast<int64_t>(free.size()), k);
            std::vector<char> is_shot(free.size(), 0);
            std::vector<Tensor> train, test;
            for (int64_t s : shots) {
                is_shot[static_cast<size_t>(s)] = 1;
                train.push_back(feats[static_cast<size_t>(s)]);
            }
            std::vector<int> labels;
            for (size_t i = 0; i < all.size(); ++i) {
                if (i < free.size() && is_shot[i]) continue;
                test.push_back(feats[i]);
                labels.push_back(i < free.size() ? 0 : 1);
            }
            method::GaussianDensity g;
            g.fit(ops::concat(train, 0));
            std::vector<float> scores = g.score(ops::concat(test, 0)).to_vector();
            const double auc = 100.0 * eval::auroc(scores, labels);
            per_seed.push_back(auc);
            sum += auc;
        }
        const double mean = sum / 3.0;
        MESSAGE(k << "-shot no-adaptation AUROC " << mean << " (seeds: " << per_seed[0] << ", " << per_seed[1] << ", "
                  << per_seed[2] << "); PyTorch reference " << want << "; features of " << all.size() << " images in "
                  << extract_s << " s");
        CHECK(std::fabs(mean - want) <= 1.5);
    }
}

TEST_CASE("[shared] patch-gauss on MPDD metal plate reproduces the PyTorch reference, image and pixel AUROC") {
    const std::string root = FSAD_SHARED_DIR "/data/mpdd-metal-plate";
    const std::string w = FSAD_SHARED_DIR "/weights/mobilenetv2_imagenet.safetensors";
    if (!std::filesystem::exists(root) || !std::filesystem::exists(w)) {
        MESSAGE("skipped: " << root << " or the MobileNetV2 weights not found");
        return;
    }
    // ../shared/peers/reference-results.md, patch-gauss (ad_reference.py: the same shots, 224 px squashed)
    eval::ProtocolOptions po;
    po.detector.weights = w;
    po.detector.scorer = Scorer::PatchGauss;
    po.detector.resolution = 224;  // the reference's (auto would work these 512 px images at 448)
    po.detector.patch.second_view = 0;  // the reference's one view
    po.shots = {5, 10};
    po.seeds = 3;
    po.gallery = 0;
    const eval::EvalResult res = eval::run_protocol(data::load_mvtec(root), po);
    const std::map<int, std::pair<double, double>> want{{5, {97.65, 98.38}}, {10, {99.35, 98.47}}};
    for (const auto& s : res.summary()) {
        MESSAGE(s.shots << "-shot: image " << s.mean << " (reference " << want.at(s.shots).first << "), pixel " << s.pixel_mean
                        << " (reference " << want.at(s.shots).second << "); " << s.fpr_mean << "% of normals flagged");
        CHECK(std::fabs(s.mean - want.at(s.shots).first) <= 1.0);
        CHECK(std::fabs(s.pixel_mean - want.at(s.shots).second) <= 0.5);
    }
}
