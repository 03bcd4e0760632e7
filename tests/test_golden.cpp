// Golden tests against PyTorch: fixtures written by tools/make_golden.py (see its docstring).
// Width-reduced ResNet18 and MobileNetV2 in train mode: features, loss, every parameter
// gradient, parameters and BatchNorm statistics after 3 Adam steps, eval-mode features after.
// (golden_bf16.safetensors: tools/make_bf16_golden.py, the bfloat16 cases at the end.)
#include <cmath>
#include <cstdio>
#include <cstring>

#include "golden.hpp"

using namespace fsad;
using namespace fsad::test;

namespace {

/// Returns the largest error ratio (error / PyTorch's float32 deviation) after the Adam steps.
double run_golden(const std::string& file, nn::Adam::Options adam = {0.0f, 0.9f, 0.99f, 1e-8f, 0.0f}) {
    g_worst_ratio = 0;
    auto fx = io::read_safetensors(test::data_dir() + "/" + file);
    nn::BackboneConfig cfg{nn::parse_backbone_kind(fx.metadata.at("backbone")), std::stof(fx.metadata.at("width"))};
    auto net = nn::make_backbone(cfg, 0);
    std::map<std::string, Tensor> sd;
    for (auto& [k, v] : fx.tensors) {
        if (k.rfind("param.", 0) == 0) sd[k.substr(6)] = v;
        if (k.rfind("buffer.", 0) == 0) sd[k.substr(7)] = v;
    }
    net->load_state_dict(sd);  // strict: the fixture has exactly our parameter and buffer names
    const Tensor& x = fx.tensors.at("input");
    const Tensor& R = fx.tensors.at("R");

    net->train();
    Var feat = net->forward(Var(x));
    Var loss = ag::sum(ag::mul(feat, Var(R)));
    check_vs_reference(file + " train.feature", feat.value(), fx, "train.feature");
    check_vs_reference(file + " train.loss", loss.value(), fx, "train.loss");
    net->zero_grad();
    loss.backward();
    for (auto& [name, p] : net->named_parameters()) {
        check_vs_reference(file + " grad." + name, p->grad(), fx, "grad." + name);
    }

    // 3 Adam steps from the initial state (restore it: the forward above moved the BN statistics)
    net->load_state_dict(sd);
    if (adam.lr == 0.0f) adam.lr = std::stof(fx.metadata.at("lr"));
    g_worst_ratio = 0;  // from here on: the quantities after the Adam steps
    nn::Adam opt(*net, adam);
    for (int s = 0; s < 3; ++s) {
        opt.zero_grad();
        ag::sum(ag::mul(net->forward(Var(x)), Var(R))).backward();
        opt.step();
    }
    for (auto& [name, p] : net->named_parameters()) {
        check_vs_reference(file + " adam3.param." + name, p->value(), fx, "adam3.param." + name, kAfterAdam);
    }
    for (auto& [name, b] : net->named_buffers()) {
        check_vs_reference(file + " adam3.buffer." + name, *b, fx, "adam3.buffer." + name, kAfterAdam);
    }
    net->eval();
    NoGradGuard ng;
    check_vs_reference(file + " eval.feature", net->forward(Var(x)).value(), fx, "eval.feature", kAfterAdam);
    if (!g_dry_run)
        MESSAGE(file << ": after Adam, largest error relative to PyTorch float32's own: " << g_worst_ratio << "x ("
                     << g_worst_name << ")");
    return g_worst_ratio;
}

}  // namespace

TEST_CASE("golden: ResNet18 (width 1/8) against PyTorch") { run_golden("golden_resnet18_w0125.safetensors"); }
TEST_CASE("golden: MobileNetV2 (width 1/4) against PyTorch") { run_golden("golden_mobilenetv2_w025.safetensors"); }

TEST_CASE("golden: a wrong Adam is caught by the post-Adam tolerance") {
    g_dry_run = true;
    const double good = run_golden("golden_resnet18_w0125.safetensors");
    const double beta2 = run_golden("golden_resnet18_w0125.safetensors", {0.0f, 0.9f, 0.999f, 1e-8f, 0.0f});
    const double lr = run_golden("golden_resnet18_w0125.safetensors", {1.02e-3f, 0.9f, 0.99f, 1e-8f, 0.0f});
    g_dry_run = false;
    MESSAGE("error ratios after Adam: correct " << good << ", beta2 0.999 " << beta2 << ", lr +2% " << lr);
    CHECK(good <= kAfterAdam);
    CHECK(beta2 > 10 * kAfterAdam);
    CHECK(lr > kAfterAdam);
}

// ---- bfloat16 (tools/make_bf16_golden.py): the rounding of ops::round_bf16 and the definition
// of a Precision::BF16 convolution, against PyTorch's bfloat16 tensors and convolutions
namespace {
bool same_bits(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::memcmp(&a, &b, sizeof a) == 0;  // -0 is not +0
}
}  // namespace

TEST_CASE("golden: bfloat16 rounding matches PyTorch's bit for bit (ties, subnormals, overflow, NaN)") {
    auto fx = io::read_safetensors(test::data_dir() + "/golden_bf16.safetensors");
    const std::vector<float> x = fx.tensors.at("round.x").to_vector(), want = fx.tensors.at("round.y").to_vector();
    const std::vector<float> got = ops::round_bf16(fx.tensors.at("round.x")).to_vector();
    REQUIRE(got.size() == want.size());
    size_t wrong = 0, ties_up = 0, ties_down = 0, to_inf = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!same_bits(got[i], want[i])) {
            if (wrong++ == 0) MESSAGE("first mismatch: " << x[i] << " -> " << got[i] << ", PyTorch " << want[i]);
        }
        if (!same_bits(math::round_bf16(x[i]), want[i])) ++wrong;  // the host+device function itself
        uint32_t u;
        std::memcpy(&u, &x[i], 4);
        if ((u & 0xffffu) == 0x8000u && std::isfinite(x[i])) (std::abs(want[i]) > std::abs(x[i]) ? ties_up : ties_down) += 1;
        to_inf += std::isfinite(x[i]) && std::isinf(want[i]);
    }
    CHECK(wrong == 0);
    CHECK(ties_up > 0);  // the fixture holds ties rounded both ways (to the even neighbour)
    CHECK(ties_down > 0);
    CHECK(to_inf > 0);
}

TEST_CASE("golden: convolutions in Precision::BF16 match PyTorch's bfloat16 convolutions") {
    auto fx = io::read_safetensors(test::data_dir() + "/golden_bf16.safetensors");
    for (const char* name : {"plain", "depthwise"}) {
        CAPTURE(name);
        const std::string p = std::string("conv.") + name + ".";
        int stride = 0, pad = 0, groups = 0;
        REQUIRE(std::sscanf(fx.metadata.at(p + "params").c_str(), "%d %d %d", &stride, &pad, &groups) == 3);
        ops::Conv2dParams cp;
        cp.stride_h = cp.stride_w = stride;
        cp.pad_h = cp.pad_w = pad;
        cp.groups = groups;
        // the fixture's operands are bfloat16 values; its results PyTorch's bfloat16 results
        const Tensor& x = fx.tensors.at(p + "x");
        const Tensor& w = fx.tensors.at(p + "w");
        const Tensor& dy = fx.tensors.at(p + "dy");
        Tensor y32 = ops::conv2d_forward(x, w, nullptr, cp), dx32, dw32;  // FP32, to show the check tells them apart
        ops::conv2d_backward(x, w, dy, cp, &dx32, &dw32, nullptr);
        ops::set_precision(ops::Precision::BF16);
        Tensor y = ops::conv2d_forward(x, w, nullptr, cp), dx, dw;
        ops::conv2d_backward(x, w, dy, cp, &dx, &dw, nullptr);
        ops::set_precision(ops::Precision::FP32);
        for (auto [what, bf, fp] : {std::tuple{"y", y, y32}, std::tuple{"dx", dx, dx32}, std::tuple{"dw", dw, dw32}}) {
            CAPTURE(what);
            const std::vector<float> got = bf.to_vector(), raw = fp.to_vector();
            const std::vector<float> want = fx.tensors.at(p + what).to_vector();
            REQUIRE(got.size() == want.size());
            float amax = 0;
            for (float v : want) amax = std::max(amax, std::abs(v));
            // float32 sums in another order may land across a rounding boundary: one bfloat16 step
            // (2^-7 relative) at most, and rarely; without the final rounding almost none is exact
            size_t exact = 0, exact_raw = 0, outside = 0;
            for (size_t i = 0; i < got.size(); ++i) {
                exact += got[i] == want[i];
                exact_raw += raw[i] == want[i];
                outside += !(std::abs(got[i] - want[i]) <= 0x1p-7f * std::abs(want[i]) + 1e-5f * amax);
            }
            CAPTURE(exact);
            CAPTURE(exact_raw);
            CHECK(outside == 0);
            CHECK(exact >= got.size() * 95 / 100);
            CHECK(exact_raw < got.size() / 2);
        }
    }
}
