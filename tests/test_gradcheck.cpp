// Finite-difference gradient checks for every differentiable op.
#include "helpers.hpp"

using namespace fsad;
using fsad::test::gradcheck;
using fsad::test::randn;
using fsad::test::randu;

namespace {
// Values spread apart so that a +-h perturbation never changes a max or crosses a ReLU kink.
Tensor spread(const Shape& s, uint64_t seed) {
    Tensor t = Tensor::empty(s);
    std::vector<int64_t> perm(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
    Rng r(seed);
    std::shuffle(perm.begin(), perm.end(), r.engine());
    for (size_t i = 0; i < perm.size(); ++i)
        t.data()[i] = -2.0f + 4.0f * (static_cast<float>(perm[i]) + 0.5f) / static_cast<float>(perm.size());
    return t;
}
}  // namespace

TEST_CASE("gradcheck: conv2d (stride, padding, dilation, groups, bias)") {
    struct Case {
        Shape x, w;
        ops::Conv2dParams p;
        bool bias;
    };
    std::vector<Case> cases = {
        {{2, 3, 7, 6}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1}, true},
        {{2, 4, 8, 8}, {6, 2, 3, 3}, {2, 2, 1, 1, 1, 1, 2}, false},   // groups=2, stride 2
        {{1, 3, 9, 9}, {2, 3, 3, 3}, {1, 2, 2, 0, 2, 2, 1}, true},    // dilation 2, asymmetric
        {{2, 4, 6, 6}, {4, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 4}, true},    // depthwise
        {{2, 4, 7, 7}, {4, 1, 3, 3}, {2, 2, 1, 1, 1, 1, 4}, false},   // depthwise stride 2
        {{2, 5, 4, 4}, {3, 5, 1, 1}, {1, 1, 0, 0, 1, 1, 1}, false},   // pointwise
        {{1, 3, 11, 11}, {4, 3, 7, 7}, {2, 2, 3, 3, 1, 1, 1}, false}, // ResNet stem shape
        {{5, 3, 4, 4}, {4, 3, 3, 3}, {2, 2, 1, 1, 1, 1, 1}, true},    // several images per GEMM chunk
        {{7, 4, 3, 3}, {6, 2, 1, 1}, {1, 1, 0, 0, 1, 1, 2}, false},   // chunked pointwise, groups
    };
    for (size_t c = 0; c < cases.size(); ++c) {
        const auto& k = cases[c];
        std::vector<Tensor> in{randn(k.x, 1 + c), randn(k.w, 2 + c, 0.5f), randn(Shape{k.w[0]}, 3 + c)};
        if (!k.bias) in.pop_back();
        gradcheck("conv2d case " + std::to_string(c), [&](const std::vector<Var>& v) {
            return ag::conv2d(v[0], v[1], k.bias ? &v[2] : nullptr, k.p);
        }, in);
    }
}

TEST_CASE("gradcheck: batchnorm train and eval, 2d and 1d") {
    for (Shape s : {Shape{4, 3, 3, 2}, Shape{6, 5}}) {
        Tensor x = randn(s, 11), g = randu(Shape{s[1]}, 12, 0.5f, 1.5f), b = randn(Shape{s[1]}, 13);
        Tensor rm = Tensor::zeros(Shape{s[1]}), rv = Tensor::full(Shape{s[1]}, 1.0f);
        gradcheck("batchnorm_train " + s.str(), [&](const std::vector<Var>& v) {
            return ag::batchnorm_train(v[0], v[1], v[2], rm, rv, 0.1f, 1e-5f);
        }, {x, g, b}, {}, 1e-2, 3e-3, 3e-2);
        Tensor erm = randn(Shape{s[1]}, 14), erv = randu(Shape{s[1]}, 15, 0.5f, 2.0f);
        gradcheck("batchnorm_eval " + s.str(), [&](const std::vector<Var>& v) {
            return ag::batchnorm_eval(v[0], v[1], v[2], erm, erv, 1e-5f);
        }, {x, g, b});
    }
}

TEST_CASE("gradcheck: batchnorm with fused ReLU / ReLU6, train and eval") {
    Shape s{4, 3, 3, 2};
    Tensor x = spread(s, 16), g = randu(Shape{3}, 17, 0.5f, 1.5f), b = randn(Shape{3}, 18, 0.3f);
    for (auto act : {math::Activation::ReLU, math::Activation::ReLU6}) {
        const float k = act == math::Activation::ReLU6 ? 4.0f : 1.0f;  // reach the ReLU6 cap too
        Tensor gk = ops::affine(g, k, 0.0f);
        Tensor rm = Tensor::zeros(Shape{3}), rv = Tensor::full(Shape{3}, 1.0f);
        gradcheck("batchnorm_train+act", [&](const std::vector<Var>& v) {
            return ag::batchnorm_train(v[0], v[1], v[2], rm, rv, 0.1f, 1e-5f, act);
        }, {x, gk, b}, {}, 1e-3, 3e-3, 3e-2);
        Tensor erm = randn(Shape{3}, 19, 0.3f), erv = randu(Shape{3}, 20, 0.5f, 2.0f);
        gradcheck("batchnorm_eval+act", [&](const std::vector<Var>& v) {
            return ag::batchnorm_eval(v[0], v[1], v[2], erm, erv, 1e-5f, act);
        }, {x, gk, b}, {}, 1e-3);
        // fused == unfused
        NoGradGuard ng;
        Tensor rm2 = Tensor::zeros(Shape{3}), rv2 = Tensor::full(Shape{3}, 1.0f);
        Tensor fused = ops::batchnorm_forward_train(x, gk, b, rm, rv, 0.1f, 1e-5f, nullptr, act);
        Tensor plain = ops::activation_forward(ops::batchnorm_forward_train(x, gk, b, rm2, rv2, 0.1f, 1e-5f, nullptr), act);
        CHECK(fused.to_vector() == plain.to_vector());
    }
}

TEST_CASE("gradcheck: relu, relu6") {
    Tensor x = spread(Shape{3, 4, 5}, 21);
    // scale to cover the ReLU6 cap too, keeping clear of 0 and 6
    Tensor x6 = ops::affine(x, 3.7f, 0.0f);
    gradcheck("relu", [](const std::vector<Var>& v) { return ag::relu(v[0]); }, {x}, {}, 1e-3);
    gradcheck("relu6", [](const std::vector<Var>& v) { return ag::relu6(v[0]); }, {x6}, {}, 1e-3);
}

TEST_CASE("gradcheck: pooling") {
    Tensor x = spread(Shape{2, 3, 7, 7}, 31);
    gradcheck("maxpool 3/2/1", [](const std::vector<Var>& v) {
        return ag::maxpool2d(v[0], ops::Pool2dParams{3, 3, 2, 2, 1, 1});
    }, {x}, {}, 1e-3);
    gradcheck("maxpool 2/2/0", [](const std::vector<Var>& v) {
        return ag::maxpool2d(v[0], ops::Pool2dParams{2, 2, 2, 2, 0, 0});
    }, {x}, {}, 1e-3);
    gradcheck("avgpool 3/2/1", [](const std::vector<Var>& v) {
        return ag::avgpool2d(v[0], ops::Pool2dParams{3, 3, 2, 2, 1, 1});
    }, {randn(Shape{2, 3, 6, 5}, 32)});
    gradcheck("global avgpool", [](const std::vector<Var>& v) { return ag::global_avgpool(v[0]); },
              {randn(Shape{2, 3, 4, 5}, 33)});
}

TEST_CASE("gradcheck: add, sub, mul, affine") {
    Tensor a = randn(Shape{3, 4}, 41), b = randn(Shape{3, 4}, 42);
    gradcheck("add", [](const std::vector<Var>& v) { return ag::add(v[0], v[1]); }, {a, b});
    gradcheck("sub", [](const std::vector<Var>& v) { return ag::sub(v[0], v[1]); }, {a, b});
    gradcheck("mul", [](const std::vector<Var>& v) { return ag::mul(v[0], v[1]); }, {a, b});
    gradcheck("affine", [](const std::vector<Var>& v) { return ag::affine(v[0], -1.5f, 0.25f); }, {a});
    gradcheck("same input twice", [](const std::vector<Var>& v) { return ag::mul(v[0], v[0]); }, {a});
}

TEST_CASE("gradcheck: linear") {
    Tensor x = randn(Shape{5, 7}, 51), w = randn(Shape{3, 7}, 52), b = randn(Shape{3}, 53);
    gradcheck("linear+bias", [](const std::vector<Var>& v) { return ag::linear(v[0], v[1], &v[2]); }, {x, w, b});
    gradcheck("linear", [](const std::vector<Var>& v) { return ag::linear(v[0], v[1], nullptr); }, {x, w});
}

TEST_CASE("gradcheck: concat, reshape, slice, gather_rows") {
    Tensor a = randn(Shape{2, 3, 2}, 61), b = randn(Shape{2, 1, 2}, 62), c = randn(Shape{3, 3, 2}, 63);
    gradcheck("concat dim 1", [](const std::vector<Var>& v) { return ag::concat({v[0], v[1]}, 1); }, {a, b});
    gradcheck("concat dim 0", [](const std::vector<Var>& v) { return ag::concat({v[0], v[1]}, 0); }, {a, c});
    gradcheck("reshape", [](const std::vector<Var>& v) { return ag::reshape(v[0], Shape{6, 2}); }, {a});
    gradcheck("slice", [](const std::vector<Var>& v) { return ag::slice(v[0], 1, 3); }, {c});
    gradcheck("gather_rows (repeats)", [](const std::vector<Var>& v) {
        return ag::gather_rows(v[0], {2, 0, 2, 1});
    }, {c});
}

TEST_CASE("gradcheck: l2_normalize, cosine_similarity") {
    Tensor a = randn(Shape{4, 6}, 71), b = randn(Shape{4, 6}, 72);
    gradcheck("l2_normalize", [](const std::vector<Var>& v) { return ag::l2_normalize(v[0]); }, {a}, {}, 1e-3);
    gradcheck("cosine_similarity", [](const std::vector<Var>& v) { return ag::cosine_similarity(v[0], v[1]); },
              {a, b}, {}, 1e-3);
    // one side constant (stop-gradient), as in the BYOL losses
    gradcheck("cosine_similarity sg", [](const std::vector<Var>& v) {
        return ag::cosine_similarity(v[0], v[1].detach());
    }, {a, b}, {true, false}, 1e-3);
}

TEST_CASE("gradcheck: sum, mean, sum_dim") {
    Tensor a = randn(Shape{3, 4, 2}, 81);
    gradcheck("sum", [](const std::vector<Var>& v) { return ag::sum(v[0]); }, {a});
    gradcheck("mean", [](const std::vector<Var>& v) { return ag::mean(v[0]); }, {a});
    for (int d = 0; d < 3; ++d)
        gradcheck("sum_dim " + std::to_string(d), [d](const std::vector<Var>& v) { return ag::sum_dim(v[0], d); },
                  {a});
}
