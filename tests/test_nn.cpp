#include "helpers.hpp"

using namespace fsad;

TEST_CASE("nn: ResNet and MobileNetV2 key names and shapes follow torchvision") {
    auto r18 = nn::make_backbone({nn::BackboneKind::ResNet18});
    auto sd = r18->state_dict();
    CHECK(sd.at("conv1.weight").shape() == Shape{64, 3, 7, 7});
    CHECK(sd.at("layer2.0.downsample.0.weight").shape() == Shape{128, 64, 1, 1});
    CHECK(sd.at("layer4.1.bn2.running_var").shape() == Shape{512});
    CHECK(r18->num_parameters() == 11176512);  // torchvision resnet18 without fc (11689512 - 513000)
    CHECK(r18->feature_dim() == 512);

    auto r50 = nn::make_backbone({nn::BackboneKind::ResNet50});
    CHECK(r50->num_parameters() == 23508032);  // torchvision resnet50 without fc
    CHECK(r50->feature_dim() == 2048);

    auto mb = nn::make_backbone({nn::BackboneKind::MobileNetV2});
    CHECK(mb->num_parameters() == 2223872);  // torchvision mobilenet_v2 without classifier
    CHECK(mb->feature_dim() == 1280);
    auto msd = mb->state_dict();
    CHECK(msd.at("features.1.conv.0.0.weight").shape() == Shape{32, 1, 3, 3});
    CHECK(msd.at("features.18.0.weight").shape() == Shape{1280, 320, 1, 1});
}

TEST_CASE("nn: width multiplier and stage outputs") {
    nn::BackboneConfig cfg{nn::BackboneKind::ResNet18, 0.125f};
    auto b = nn::make_backbone(cfg, 1);
    Tensor x = test::randn(Shape{2, 3, 32, 32}, 5);
    NoGradGuard ng;
    auto out = b->forward_features(Var(x), true);
    CHECK(out.feature.shape() == Shape{2, 64});
    REQUIRE(out.stages.size() == 4);
    CHECK(out.stages[0].shape() == Shape{2, 8, 8, 8});
    CHECK(out.stages[3].shape() == Shape{2, 64, 1, 1});
}

TEST_CASE("nn: flatten makes parameters views of one buffer; zero_grad clears it") {
    auto b = nn::make_backbone({nn::BackboneKind::ResNet18, 0.125f}, 2);
    REQUIRE(b->flattened());
    CHECK(b->flat_params().numel() == b->num_parameters());
    auto params = b->named_parameters();
    CHECK(params.front().second->value().same_storage(b->flat_params()));
    Tensor x = test::randn(Shape{2, 3, 32, 32}, 6);
    ag::sum(b->forward(Var(x))).backward();
    auto g = b->flat_grads().to_vector();
    CHECK(std::any_of(g.begin(), g.end(), [](float v) { return v != 0.0f; }));
    b->zero_grad();
    g = b->flat_grads().to_vector();
    CHECK(std::all_of(g.begin(), g.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("nn: state dict round trip and strict loading errors") {
    auto a = nn::make_backbone({nn::BackboneKind::MobileNetV2, 0.25f}, 3);
    auto b = nn::make_backbone({nn::BackboneKind::MobileNetV2, 0.25f}, 4);
    b->load_state_dict(a->state_dict());
    CHECK(a->flat_params().to_vector() == b->flat_params().to_vector());
    CHECK(a->flat_buffers().to_vector() == b->flat_buffers().to_vector());
    auto sd = a->state_dict();
    sd.erase("features.0.0.weight");
    sd["bogus.weight"] = Tensor::zeros(Shape{1});
    CHECK_THROWS_WITH_AS(b->load_state_dict(sd), doctest::Contains("missing key(s): features.0.0.weight"), Error);
    auto sd2 = a->state_dict();
    sd2["features.0.0.weight"] = Tensor::zeros(Shape{3});
    CHECK_THROWS_WITH_AS(b->load_state_dict(sd2), doctest::Contains("'features.0.0.weight' has shape [3]"), Error);
}

TEST_CASE("nn: Adam matches the closed form of its first step; EMA averages params and buffers") {
    nn::MLP m(3, 4, 2, *std::make_unique<Rng>(1));
    m.flatten();
    std::vector<float> p0 = m.flat_params().to_vector();
    Tensor x = test::randn(Shape{5, 3}, 8);
    ag::sum(m.forward(Var(x))).backward();
    std::vector<float> g = m.flat_grads().to_vector();
    nn::Adam opt(m, {1e-2f, 0.9f, 0.99f, 1e-8f, 0.0f});
    opt.step();
    std::vector<float> p1 = m.flat_params().to_vector(), want(p0.size());
    // step 1: m_hat = g, v_hat = g^2 -> p -= lr * g / (|g| + eps)
    for (size_t i = 0; i < p0.size(); ++i) want[i] = p0[i] - 1e-2f * g[i] / (std::fabs(g[i]) + 1e-8f);
    FSAD_CHECK_CLOSE("adam step 1", p1, want, 1e-6, 1e-5);

    nn::MLP t(3, 4, 2, *std::make_unique<Rng>(2));
    t.flatten();
    std::vector<float> tp = t.flat_params().to_vector(), tb = t.flat_buffers().to_vector();
    std::vector<float> ob = m.flat_buffers().to_vector();
    nn::ema_update(t, m, 0.99f);
    std::vector<float> ep = t.flat_params().to_vector(), eb = t.flat_buffers().to_vector(), wp(tp.size()), wb(tb.size());
    for (size_t i = 0; i < tp.size(); ++i) wp[i] = 0.99f * tp[i] + 0.01f * p1[i];
    for (size_t i = 0; i < tb.size(); ++i) wb[i] = 0.99f * tb[i] + 0.01f * ob[i];
    FSAD_CHECK_CLOSE("ema params", ep, wp, 1e-7, 1e-6);
    FSAD_CHECK_CLOSE("ema buffers", eb, wb, 1e-7, 1e-6);
}

TEST_CASE("nn: train/eval switch changes batch norm behaviour, never inferred from batch size") {
    auto b = nn::make_backbone({nn::BackboneKind::ResNet18, 0.125f}, 9);
    Tensor x = test::randn(Shape{1, 3, 32, 32}, 10);
    b->eval();
    NoGradGuard ng;
    CHECK_NOTHROW(b->forward(Var(x)));  // eval with batch 1 is fine
    b->train();
    // training mode with a 1x1 final map and batch 1 has one value per channel: a clear error
    CHECK_THROWS_WITH_AS(b->forward(Var(x)), doctest::Contains("more than one value per channel"), Error);
}

TEST_CASE("nn: to(device) keeps a flattened module flattened; to its own device is a no-op") {
    auto net = nn::make_backbone({nn::BackboneKind::ResNet18, 0.125f}, 1);
    REQUIRE(net->flattened());
    const Tensor before = net->flat_params();
    net->to(Device::cpu());
    CHECK(net->flattened());
    CHECK(net->flat_params().same_storage(before));
    CHECK(net->device() == Device::cpu());
    if (!cuda_available()) CHECK_THROWS_AS(net->to(Device::cuda(0)), Error);
}

TEST_CASE("nn: freeze_stages stops gradients, keeps eval mode and survives flattening into a parent") {
    auto b = nn::make_backbone({nn::BackboneKind::ResNet18, 0.125f}, 4);
    CHECK(b->num_stages() == 4);
    CHECK_THROWS_WITH_AS(b->freeze_stages(5), doctest::Contains("k must lie in [0, 4], got 5"), Error);
    CHECK(nn::make_backbone({nn::BackboneKind::MobileNetV2, 0.25f}, 4)->num_stages() == 8);
    b->freeze_stages(2);
    // a parent that flattens the frozen backbone into its own buffers keeps the flags
    struct Parent : nn::Module {
        explicit Parent(std::shared_ptr<nn::Backbone> bb) : net(register_module("net", std::move(bb))) { flatten(); }
        std::shared_ptr<nn::Backbone> net;
    } parent(b);
    parent.train();
    for (auto& [name, p] : parent.named_parameters()) {
        const bool frozen = name.rfind("net.conv1.", 0) == 0 || name.rfind("net.bn1.", 0) == 0 ||
                            name.rfind("net.layer1.", 0) == 0 || name.rfind("net.layer2.", 0) == 0;
        INFO(name);
        CHECK(p->requires_grad() == !frozen);
    }
    const std::vector<float> p0 = parent.flat_params().to_vector(), b0 = parent.flat_buffers().to_vector();
    parent.zero_grad();
    ag::sum(b->forward(Var(test::randn(Shape{4, 3, 32, 32}, 5)))).backward();
    nn::Adam opt(parent, {1e-2f, 0.9f, 0.99f, 1e-8f, 0.1f});  // weight decay must not touch frozen ones
    opt.step();
    const std::vector<float> p1 = parent.flat_params().to_vector(), b1 = parent.flat_buffers().to_vector();
    const std::vector<float> g = parent.flat_grads().to_vector();
    int64_t off = 0;
    for (auto& [name, p] : parent.named_parameters()) {
        const int64_t n = p->value().numel();
        bool same = true, zero_grad = true;
        for (int64_t i = off; i < off + n; ++i) {
            same = same && p1[static_cast<size_t>(i)] == p0[static_cast<size_t>(i)];
            zero_grad = zero_grad && g[static_cast<size_t>(i)] == 0.0f;
        }
        INFO(name);
        CHECK(same == !p->requires_grad());  // frozen: bit-identical; trained: moved
        if (!p->requires_grad()) CHECK(zero_grad);
        off += n;
    }
    // frozen stages ran BatchNorm in eval mode (running statistics untouched), the others trained
    off = 0;
    for (auto& [name, t] : parent.named_buffers()) {
        const int64_t n = t->numel();
        bool same = true;
        for (int64_t i = off; i < off + n; ++i) same = same && b1[static_cast<size_t>(i)] == b0[static_cast<size_t>(i)];
        const bool frozen = name.rfind("net.bn1.", 0) == 0 || name.rfind("net.layer1.", 0) == 0 ||
                            name.rfind("net.layer2.", 0) == 0;
        INFO(name);
        if (name.find("running_") != std::string::npos) CHECK(same == frozen);
        off += n;
    }
}

TEST_CASE("nn: inference fuses conv + batch norm; the features equal the recorded (unfused) forward") {
    for (auto kind : {nn::BackboneKind::ResNet18, nn::BackboneKind::ResNet50, nn::BackboneKind::MobileNetV2}) {
        auto b = nn::make_backbone({kind, 0.25f}, 11);
        // non-trivial running statistics, so the folded scale and shift matter
        for (auto& [name, t] : b->named_buffers())
            if (name.find("running_var") != std::string::npos) t->copy_from(Rng(3).uniform_tensor(t->shape(), 0.5f, 2.0f));
            else if (name.find("running_mean") != std::string::npos) t->copy_from(test::randn(t->shape(), 4, 0.1f));
        b->eval();
        Tensor x = test::randn(Shape{2, 3, 40, 40}, 12);
        Tensor fused;
        {
            NoGradGuard ng;
            fused = b->forward(Var(x)).value();
        }
        Var xg(x, true);  // a graph is recorded: every conv and batch norm runs as its own op
        Tensor unfused = b->forward(xg).value();
        FSAD_CHECK_CLOSE("fused vs unfused features " + nn::to_string(kind), fused.to_vector(), unfused.to_vector(), 1e-5,
                         1e-4);
    }
}

TEST_CASE("nn: prepare_inference gives the same features, and is dropped when weights may change") {
    for (auto kind : {nn::BackboneKind::ResNet18, nn::BackboneKind::MobileNetV2}) {
        auto net = nn::make_backbone({kind, 0.5f}, 5);
        Tensor x = test::randn(Shape{1, 3, 64, 64}, 6), xb = test::randn(Shape{4, 3, 48, 48}, 7);
        net->eval();
        NoGradGuard ng;
        const Tensor want = net->forward(Var(x)).value(), want_b = net->forward(Var(xb)).value();
        net->prepare_inference();
        for (int call = 0; call < 2; ++call) {
            FSAD_CHECK_CLOSE("prepared batch 1", net->forward(Var(x)).value().to_vector(), want.to_vector(), 1e-5, 1e-4);
            FSAD_CHECK_CLOSE("prepared batch 4", net->forward(Var(xb)).value().to_vector(), want_b.to_vector(), 1e-5,
                             1e-4);
        }
        // a write the model does not know of: refused (the first weight is always sampled)
        Tensor w0 = net->named_parameters()[0].second->value();
        w0.data()[0] += 0.5f;
        CHECK_THROWS_WITH_AS(net->forward(Var(x)), doctest::Contains("changed after they were prepared"), Error);
        net->prepare_inference();
        CHECK_NOTHROW(net->forward(Var(x)));
        // train(true), load_state_dict and an Adam step drop the preparation: the new weights are used
        net->train();
        net->eval();
        w0.data()[0] -= 0.5f;
        FSAD_CHECK_CLOSE("after train()", net->forward(Var(x)).value().to_vector(), want.to_vector(), 1e-5, 1e-4);
        net->prepare_inference();
        auto other = nn::make_backbone({kind, 0.5f}, 8);
        other->eval();
        const Tensor want_other = other->forward(Var(x)).value();
        net->load_state_dict(other->state_dict());
        FSAD_CHECK_CLOSE("after load_state_dict", net->forward(Var(x)).value().to_vector(), want_other.to_vector(),
                         1e-5, 1e-4);
    }
    auto net = nn::make_backbone({nn::BackboneKind::ResNet18, 0.25f}, 9);
    nn::Adam opt(*net, {});
    net->eval();
    net->prepare_inference();
    Tensor x = test::randn(Shape{2, 3, 32, 32}, 10);
    Tensor before;
    {
        NoGradGuard ng;
        before = net->forward(Var(x)).value();
    }
    ag::mean(net->forward(Var(x))).backward();  // eval-mode BN, gradients recorded: the unfused path
    opt.step();
    NoGradGuard ng;
    const Tensor after = net->forward(Var(x)).value();  // no throw: the step dropped the preparation
    CHECK(test::compare(after.to_vector(), before.to_vector(), 0, 0).max_abs > 0);
}

TEST_CASE("ops: the profiler counts every op once, by device, only while it is alive") {
    auto net = nn::make_backbone({nn::BackboneKind::ResNet18, 0.125f}, 5);
    net->eval();
    const Tensor x = test::randn(Shape{2, 3, 32, 32}, 6);
    auto row = [](const std::vector<ops::Profiler::Row>& rows, const std::string& op) {
        for (const auto& r : rows)
            if (r.op == op) return r;
        return ops::Profiler::Row{};
    };
    {
        NoGradGuard ng;
        net->forward(Var(x));  // not profiled
    }
    {
        ops::Profiler prof;
        CHECK_THROWS_WITH_AS(ops::Profiler(), doctest::Contains("already has a profiler"), Error);
        {
            NoGradGuard ng;
            net->forward(Var(x));  // inference: every conv fused with its batch norm
        }
        const auto rows = prof.report();
        const auto conv = row(rows, "conv2d_bn_eval_forward");
        CHECK(conv.calls == 20);  // stem, 16 in the blocks, 3 downsampling
        CHECK(conv.device == Device::cpu());
        CHECK(conv.ms > 0);
        CHECK(row(rows, "maxpool2d_forward").calls == 1);
        CHECK(row(rows, "conv2d_forward").calls == 0);
        for (size_t i = 1; i < rows.size(); ++i) CHECK(rows[i - 1].ms >= rows[i].ms);  // largest first
        const std::string t = prof.table();
        CHECK(t.find("conv2d_bn_eval_forward") != std::string::npos);
        CHECK(t.find("all ops") != std::string::npos);
        double total = 0;
        for (const auto& r : rows) total += r.ms;
        CHECK(prof.wall_ms() >= total);  // the ops ran inside the profiled span
    }
    ops::Profiler prof;  // a new one starts empty: training forward and backward
    net->train();
    Var xv(x);
    ag::mean(net->forward(xv)).backward();
    const auto rows = prof.report();
    CHECK(row(rows, "conv2d_bn_eval_forward").calls == 0);
    CHECK(row(rows, "conv2d_forward").calls == 20);
    CHECK(row(rows, "conv2d_backward").calls == 20);
    CHECK(row(rows, "batchnorm_forward_train").calls == 20);
}
