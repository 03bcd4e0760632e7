// Two full fine-tuning steps (BYOL + L_pp + L_np, Adam, EMA target) against PyTorch
// (tools/make_byol_golden.py): losses, first-step gradients, online parameters after two
// Adam steps, target parameters and BatchNorm statistics after two EMA updates.
#include "golden.hpp"

using namespace fsad;
using namespace fsad::test;

namespace {
// BYOL options small enough for a unit test: batch 4, heads of 16 and 8, 32 px views
method::ByolOptions tiny_options() {
    method::ByolOptions o;
    o.batch = 4;
    o.hidden = 16;
    o.projection = 8;
    o.augment.size = 32;
    return o;
}
}  // namespace

TEST_CASE("golden: two BYOL + L_pp + L_np steps against PyTorch") {
    auto fx = io::read_safetensors(test::data_dir() + "/golden_byol.safetensors");
    auto meta = [&](const char* k) { return std::stof(fx.metadata.at(k)); };
    method::ByolOptions o;
    o.batch = static_cast<int64_t>(meta("batch"));
    o.hidden = static_cast<int64_t>(meta("hidden"));
    o.projection = static_cast<int64_t>(meta("projection"));
    o.lr = meta("lr");
    o.ema = meta("ema");
    o.lambda_pp = meta("lambda_pp");
    o.lambda_np = meta("lambda_np");
    o.negative = method::Negative::CutPaste;  // views are given; this switches L_np on
    nn::BackboneConfig cfg{nn::BackboneKind::ResNet18, 0.125f};
    method::ByolTrainer tr(nn::make_backbone(cfg, 0), [&] { return nn::make_backbone(cfg, 1); }, o);
    std::map<std::string, Tensor> init;
    for (auto& [k, v] : fx.tensors) {
        if (k.rfind("init.param.", 0) == 0) init[k.substr(11)] = v;
        if (k.rfind("init.buffer.", 0) == 0) init[k.substr(12)] = v;
    }
    tr.online().load_state_dict(init);
    tr.sync_target();
    g_worst_ratio = 0;
    for (int s = 0; s < 2; ++s) {
        const std::string p = "x." + std::to_string(s) + ".";
        Tensor xn = fx.tensors.at(p + "2");
        std::vector<int64_t> perm;
        for (float v : fx.tensors.at("perm." + std::to_string(s)).to_vector()) perm.push_back(static_cast<int64_t>(v));
        method::StepStats st = tr.train_step(fx.tensors.at(p + "0"), fx.tensors.at(p + "1"), &xn, perm);
        Tensor got = Tensor::from_vector(Shape{4}, {st.loss, st.con, st.pair, st.neg});
        // the second step's losses come after one Adam step: post-Adam allowance
        check_vs_reference("step " + std::to_string(s) + " losses [total, con, pp, np]", got, fx,
                           "step" + std::to_string(s) + ".loss", s == 0 ? 4.0 : kAfterAdam);
        if (s == 0)  // the online flat gradient buffer still holds the step's gradients
            for (auto& [name, v] : tr.online().named_parameters())
                check_vs_reference("step 0 grad " + name, v->grad(), fx, "step0.grad." + name);
    }
    for (auto& [name, v] : tr.online().named_parameters())
        check_vs_reference("online after 2 steps " + name, v->value(), fx, "step1.online.param." + name, kAfterAdam);
    // the target is 0.99 * itself + 0.01 * online after each step: its error is at most
    // 0.01 * (online error of step 1 + step 2), so its noise floor is at least 2% of the online's
    const double inherit = 2.0 * (1.0 - static_cast<double>(o.ema));
    for (auto& [name, v] : tr.target().named_parameters())
        check_vs_reference("target after 2 steps " + name, v->value(), fx, "step1.target.param." + name, kAfterAdam,
                           inherit * fx.tensors.at("torch32dev.step1.online.param." + name).item());
    for (auto& [name, b] : tr.target().named_buffers())
        check_vs_reference("target buffer after 2 steps " + name, *b, fx, "step1.target.buffer." + name, kAfterAdam);
    MESSAGE("BYOL golden: largest error relative to PyTorch float32's own: " << g_worst_ratio << "x (" << g_worst_name << ")");
}

TEST_CASE("byol: batches use every shot before repeating one; divergence names the step") {
    Rng rng(3);
    auto b = method::ByolTrainer::draw_batch(5, 12, rng);
    REQUIRE(b.size() == 12);
    std::vector<int> count(5, 0);
    for (size_t i = 0; i < 5; ++i) count[static_cast<size_t>(b[i])]++;
    for (int c : count) CHECK(c == 1);
    for (size_t i = 5; i < 10; ++i) count[static_cast<size_t>(b[i])]++;
    for (int c : count) CHECK(c == 2);

    method::ByolOptions o = tiny_options();
    o.lr = 1e30f;  // guaranteed to blow up
    nn::BackboneConfig cfg{nn::BackboneKind::ResNet18, 0.125f};
    method::ByolTrainer tr(nn::make_backbone(cfg, 0), [&] { return nn::make_backbone(cfg, 1); }, o);
    std::vector<Tensor> shots{Rng(1).uniform_tensor(Shape{3, 40, 40}, 0, 1), Rng(2).uniform_tensor(Shape{3, 40, 40}, 0, 1)};
    // the diverged step changes no weight: the losses are read after the backward pass but before Adam
    bool threw = false;
    for (int i = 0; i < 5 && !threw; ++i) {
        const std::vector<float> before = tr.online().flat_params().to_vector();
        try {
            tr.step(shots);
        } catch (const Error& e) {
            threw = true;
            CHECK(std::string(e.what()).find("diverged at step") != std::string::npos);
            FSAD_CHECK_CLOSE("weights after the refused step", tr.online().flat_params().to_vector(), before, 0, 0);
        }
    }
    CHECK(threw);
}

TEST_CASE("byol: frozen stages stay as loaded in the online and the target network") {
    method::ByolOptions o = tiny_options();
    o.frozen_stages = 3;
    nn::BackboneConfig cfg{nn::BackboneKind::MobileNetV2, 0.25f};
    auto backbone = nn::make_backbone(cfg, 0);
    const auto before = backbone->state_dict();
    std::map<std::string, std::vector<float>> b0;
    for (auto& [k, v] : before) b0[k] = v.to_vector();
    method::ByolTrainer tr(backbone, [&] { return nn::make_backbone(cfg, 1); }, o);
    std::vector<Tensor> shots{Rng(1).uniform_tensor(Shape{3, 40, 40}, 0, 1), Rng(2).uniform_tensor(Shape{3, 40, 40}, 0, 1)};
    for (int i = 0; i < 2; ++i) tr.step(shots);
    // stages 1-3 of MobileNetV2 end at features.6 (rows 1, 2, 3 have 1, 2, 3 blocks)
    auto frozen = [](const std::string& k) {
        for (int i = 0; i <= 6; ++i)
            if (k.rfind("features." + std::to_string(i) + ".", 0) == 0) return true;
        return false;
    };
    int n_frozen = 0, n_moved = 0;
    for (auto* net : {&tr.online().backbone, &tr.target().backbone}) {
        for (auto& [k, v] : (*net)->state_dict()) {
            const std::vector<float> now = v.to_vector();
            INFO(k);
            if (frozen(k)) {
                CHECK(now == b0.at(k));
                ++n_frozen;
            } else if (k.find("weight") != std::string::npos) {
                n_moved += now != b0.at(k);
            }
        }
    }
    CHECK(n_frozen > 0);
    CHECK(n_moved > 20);  // the later stages were fine-tuned
    o.frozen_stages = 9;
    CHECK_THROWS_WITH_AS(method::ByolTrainer(nn::make_backbone(cfg, 0), [&] { return nn::make_backbone(cfg, 1); }, o),
                         doctest::Contains("frozen_stages must lie in [0, 8]"), Error);
}

TEST_CASE("byol: fit with the next views prepared on a second thread gives the same weights") {
    nn::BackboneConfig cfg{nn::BackboneKind::ResNet18, 0.125f};
    std::vector<Tensor> shots;
    for (uint64_t i = 0; i < 3; ++i) shots.push_back(Rng(10 + i).uniform_tensor(Shape{3, 40, 40}, 0, 1));
    auto run = [&](method::ByolOptions::Prefetch pf, int64_t steps, int threads) {
        method::ByolOptions o = tiny_options();
        o.steps = steps;
        o.negative = method::Negative::CutPaste;
        o.seed = 7;
        o.prefetch = pf;
        const int before = get_num_threads();
        set_num_threads(threads);
        method::ByolTrainer tr(nn::make_backbone(cfg, 0), [&] { return nn::make_backbone(cfg, 1); }, o);
        std::vector<float> losses;
        tr.fit(shots, [&](const method::StepStats& s) { losses.push_back(s.loss); });
        set_num_threads(before);
        CHECK(tr.steps_done() == steps);
        return std::make_pair(tr.online().flat_params().to_vector(), losses);
    };
    const auto off = run(method::ByolOptions::Prefetch::Off, 4, 2);
    const auto on = run(method::ByolOptions::Prefetch::On, 4, 2);
    CHECK(on.second == off.second);  // the same views: bitwise the same losses and weights
    FSAD_CHECK_CLOSE("weights, prefetched vs sequential", on.first, off.first, 0, 0);
    CHECK(run(method::ByolOptions::Prefetch::On, 1, 1).second.size() == 1);
    // a callback that throws mid-fit: the prefetching thread is joined, the error comes through
    method::ByolOptions o = tiny_options();
    o.steps = 5;
    o.prefetch = method::ByolOptions::Prefetch::On;
    method::ByolTrainer tr(nn::make_backbone(cfg, 0), [&] { return nn::make_backbone(cfg, 1); }, o);
    CHECK_THROWS_WITH_AS(tr.fit(shots, [](const method::StepStats& s) {
        if (s.step == 1) throw Error("stop here");
    }),
                         doctest::Contains("stop here"), Error);
    CHECK(tr.steps_done() == 2);
}
