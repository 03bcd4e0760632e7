// Golden tests against PyTorch: fixtures written by tools/make_golden.py (see its docstring).
// Width-reduced ResNet18 and MobileNetV2 in train mode: features, loss, every parameter
// gradient, parameters and BatchNorm statistics after 3 Adam steps, eval-mode features after.
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
