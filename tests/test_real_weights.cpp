// ImageNet MobileNetV2 weights from ../shared/weights: the eval-mode features of the reference
// inputs must match those PyTorch computed from the same file (README there: ~1e-4 relative).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

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
