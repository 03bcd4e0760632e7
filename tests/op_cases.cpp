// The op cases: shapes small enough for the CUDA emulator under ASan, chosen to reach each
// kernel's paths (strides, groups, dilation, several images per GEMM chunk, planes under and over
// a block). The tolerances are those the hand-written tests these cases replace had settled on.
#include "op_cases.hpp"

#include <algorithm>
#include <cmath>

namespace fsad::test {
namespace {
using math::Activation;
using ops::Conv2dParams;
using ops::Pool2dParams;
using Vars = std::vector<Var>;

Tensor normal(const Shape& s, uint64_t seed, float std = 1.0f) { return Rng(seed).normal_tensor(s, 0.0f, std); }
Tensor uniform(const Shape& s, uint64_t seed, float lo, float hi) { return Rng(seed).uniform_tensor(s, lo, hi); }
// Values spread apart, in [-2, 2], so that a +-h perturbation never changes a max or crosses a
// ReLU kink.
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
const char* act_name(Activation a) {
    return a == Activation::ReLU ? "ReLU" : a == Activation::ReLU6 ? "ReLU6" : "identity";
}
// the first `n` of the case's inputs get a gradient
std::vector<bool> first(size_t n, size_t inputs) {
    std::vector<bool> g(inputs, false);
    std::fill_n(g.begin(), n, true);
    return g;
}

void convolutions(std::vector<OpCase>& t) {
    struct Conv {
        Shape x, w;
        Conv2dParams p;
        bool bias, bf16;
        const char* what;
    };
    const Conv convs[] = {
        {{2, 3, 7, 6}, {4, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1}, true, false, "3x3"},
        {{2, 4, 8, 8}, {6, 2, 3, 3}, {2, 2, 1, 1, 1, 1, 2}, false, false, "groups 2, stride 2"},
        {{1, 3, 9, 9}, {2, 3, 3, 3}, {1, 2, 2, 0, 2, 2, 1}, true, false, "dilation 2, asymmetric"},
        {{2, 4, 6, 6}, {4, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 4}, true, false, "depthwise"},
        {{2, 4, 7, 7}, {4, 1, 3, 3}, {2, 2, 1, 1, 1, 1, 4}, false, false, "depthwise stride 2"},
        {{2, 5, 4, 4}, {3, 5, 1, 1}, {1, 1, 0, 0, 1, 1, 1}, false, false, "pointwise"},
        {{1, 3, 11, 11}, {4, 3, 7, 7}, {2, 2, 3, 3, 1, 1, 1}, false, false, "ResNet stem"},
        {{5, 3, 4, 4}, {4, 3, 3, 3}, {2, 2, 1, 1, 1, 1, 1}, true, false, "several images per GEMM chunk"},
        {{7, 4, 3, 3}, {6, 2, 1, 1}, {1, 1, 0, 0, 1, 1, 2}, false, false, "chunked pointwise, groups"},
        // wider layers, also in BF16 (cuDNN's algorithms for real channel counts)
        {{2, 3, 17, 15}, {8, 3, 7, 7}, {2, 2, 3, 3, 1, 1, 1}, true, true, "stem 8 channels"},
        {{2, 16, 9, 9}, {16, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}, false, true, "3x3 16 channels"},
        {{2, 16, 9, 9}, {32, 16, 1, 1}, {2, 2, 0, 0, 1, 1, 1}, false, true, "1x1 downsample"},
        {{2, 12, 8, 8}, {12, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 12}, false, true, "depthwise 12 channels"},
        {{1, 8, 10, 10}, {8, 4, 3, 3}, {1, 1, 2, 2, 2, 2, 2}, true, true, "grouped + dilated"},
    };
    uint64_t seed = 100;
    for (const Conv& c : convs) {
        std::vector<Tensor> in{normal(c.x, seed), normal(c.w, seed + 1, 0.5f)};
        if (c.bias) in.push_back(normal(Shape{c.w[0]}, seed + 2));
        seed += 3;
        const size_t n = in.size();
        t.push_back({.op = "conv2d", .kernels = {"conv2d_forward", "conv2d_backward"},
                     .label = std::string(c.what) + " " + c.x.str(), .inputs = std::move(in), .grad = first(n, n),
                     .run = [c](const Vars& v) { return ag::conv2d(v[0], v[1], c.bias ? &v[2] : nullptr, c.p); },
                     .out_tol = {1e-4f, 1e-4f}, .grad_par = {1e-4f, 1e-3f}, .bf16 = c.bf16});
    }
    // inference only: the convolution, batch norm, residual and activation in one op
    Conv2dParams p;
    p.pad_h = p.pad_w = 1;
    for (Activation act : {Activation::Identity, Activation::ReLU, Activation::ReLU6})
        for (bool residual : {false, true}) {
            std::vector<Tensor> in{uniform(Shape{3, 16, 12, 12}, 21, -1, 1), uniform(Shape{8, 16, 3, 3}, 22, -0.3f, 0.3f),
                                   uniform(Shape{8}, 23, 0.5f, 2.0f), uniform(Shape{8}, 24, -1, 1),
                                   uniform(Shape{8}, 25, -1, 1), uniform(Shape{8}, 26, 0.5f, 1.5f)};
            if (residual) in.push_back(uniform(Shape{3, 8, 12, 12}, 27, -1, 1));
            t.push_back({.op = "conv2d_bn_eval_forward", .kernels = {"conv2d_bn_eval_forward"},
                         .label = std::string(act_name(act)) + (residual ? " + residual" : ""),
                         .inputs = std::move(in), .run = [p, act, residual](const Vars& v) {
                             return Var(ops::conv2d_bn_eval_forward(v[0].value(), v[1].value(), v[2].value(), v[3].value(),
                                                                    v[4].value(), v[5].value(), 1e-5f, p, act,
                                                                    residual ? &v[6].value() : nullptr));
                         }});
        }
}

void batchnorms(std::vector<OpCase>& t) {
    // inputs: x, gamma, beta (differentiable), running mean and variance (updated in train mode)
    // (beta and the evaluation-mode statistics from seeds `seed`..`seed + 2`, of spread `std`)
    auto add = [&t](Shape s, Tensor x, Tensor gamma, Activation act, double h, uint64_t seed, float std) {
        const int64_t c = s[1];
        const std::string label = s.str() + " " + act_name(act);
        Tensor beta = normal(Shape{c}, seed, std);
        t.push_back({.op = "batchnorm_train", .kernels = {"batchnorm_forward_train", "batchnorm_backward"},
                     .label = label,
                     .inputs = {x, gamma, beta, Tensor::zeros(Shape{c}), Tensor::full(Shape{c}, 1.0f)},
                     .grad = first(3, 5),
                     .run = [act](const Vars& v) {
                         return ag::batchnorm_train(v[0], v[1], v[2], v[3].value(), v[4].value(), 0.1f, 1e-5f, act);
                     },
                     .grad_tol = {h, 3e-3, 3e-2}, .grad_par = {1e-3f, 1e-4f}});
        t.push_back({.op = "batchnorm_eval",
                     .kernels = {"batchnorm_forward_eval", "batchnorm_invstd", "batchnorm_backward"},
                     .label = label,
                     .inputs = {x, gamma, beta, normal(Shape{c}, seed + 1, std), uniform(Shape{c}, seed + 2, 0.5f, 2.0f)},
                     .grad = first(3, 5),
                     .run = [act](const Vars& v) {
                         return ag::batchnorm_eval(v[0], v[1], v[2], v[3].value(), v[4].value(), 1e-5f, act);
                     },
                     .grad_tol = {h}, .grad_par = {1e-3f, 1e-4f}});
    };
    for (Shape s : {Shape{4, 3, 3, 2}, Shape{6, 5}})
        add(s, normal(s, 11), uniform(Shape{s[1]}, 12, 0.5f, 1.5f), Activation::Identity, 1e-2, 13, 1.0f);
    // fused activations on spread values (no output near a kink); ReLU6 with 4x the scale to
    // reach its cap too
    const Shape s{4, 3, 3, 2};
    add(s, spread(s, 16), uniform(Shape{3}, 17, 0.5f, 1.5f), Activation::ReLU, 1e-3, 18, 0.3f);
    add(s, spread(s, 16), ops::affine(uniform(Shape{3}, 17, 0.5f, 1.5f), 4.0f, 0.0f), Activation::ReLU6, 1e-3, 18, 0.3f);
}

void activations_and_pooling(std::vector<OpCase>& t) {
    // spread values kept clear of the kinks; x3.7 reaches ReLU6's cap
    const Tensor x = spread(Shape{3, 4, 5}, 21);
    for (auto [act, scale] : {std::pair{Activation::ReLU, 1.0f}, std::pair{Activation::ReLU6, 3.7f}})
        t.push_back({.op = "activation", .kernels = {"activation_forward", "activation_backward"},
                     .label = act_name(act), .inputs = {ops::affine(x, scale, 0.0f)}, .grad = {true},
                     .run = [act](const Vars& v) { return ag::activation(v[0], act); }, .grad_tol = {1e-3}});
    const Tensor px = spread(Shape{2, 3, 7, 7}, 31);
    Tensor ties = px.clone();  // whole numbers: windows with repeated maxima (the first in row-major order wins)
    for (int64_t i = 0; i < ties.numel(); ++i) ties.data()[i] = std::floor(ties.data()[i] * 2.0f);
    const Pool2dParams pools[] = {{3, 3, 2, 2, 1, 1}, {2, 2, 2, 2, 0, 0}, {3, 2, 1, 2, 1, 0}};
    for (const Pool2dParams& p : pools) {
        const std::string label = std::to_string(p.kh) + "x" + std::to_string(p.kw) + " stride " +
                                  std::to_string(p.stride_h) + "x" + std::to_string(p.stride_w) + " pad " +
                                  std::to_string(p.pad_h) + "x" + std::to_string(p.pad_w);
        auto maxpool = [p](const Vars& v) { return ag::maxpool2d(v[0], p); };
        t.push_back({.op = "maxpool2d", .kernels = {"maxpool2d_forward", "maxpool2d_backward"}, .label = label,
                     .inputs = {px}, .grad = {true}, .run = maxpool, .grad_tol = {1e-3}});
        t.push_back({.op = "maxpool2d", .kernels = {"maxpool2d_forward", "maxpool2d_backward"}, .label = label + " ties",
                     .inputs = {ties}, .grad = {true}, .run = maxpool, .gradcheck = false});
        t.push_back({.op = "avgpool2d", .kernels = {"avgpool2d_forward", "avgpool2d_backward"}, .label = label,
                     .inputs = {normal(Shape{2, 3, 6, 5}, 32)}, .grad = {true},
                     .run = [p](const Vars& v) { return ag::avgpool2d(v[0], p); }});
    }
    t.push_back({.op = "global_avgpool", .kernels = {"global_avgpool_forward", "global_avgpool_backward"},
                 .label = "[2,3,4,5]", .inputs = {normal(Shape{2, 3, 4, 5}, 33)}, .grad = {true},
                 .run = [](const Vars& v) { return ag::global_avgpool(v[0]); }});
}

void elementwise(std::vector<OpCase>& t) {
    const Tensor a = normal(Shape{3, 4}, 41), b = normal(Shape{3, 4}, 42);
    t.push_back({.op = "add", .kernels = {"axpby"}, .label = "[3,4]", .inputs = {a, b}, .grad = {true, true},
                 .run = [](const Vars& v) { return ag::add(v[0], v[1]); }});
    t.push_back({.op = "sub", .kernels = {"axpby", "affine"}, .label = "[3,4]", .inputs = {a, b}, .grad = {true, true},
                 .run = [](const Vars& v) { return ag::sub(v[0], v[1]); }});
    t.push_back({.op = "mul", .kernels = {"mul"}, .label = "[3,4]", .inputs = {a, b}, .grad = {true, true},
                 .run = [](const Vars& v) { return ag::mul(v[0], v[1]); }});
    t.push_back({.op = "mul", .kernels = {"mul"}, .label = "same input twice", .inputs = {a}, .grad = {true},
                 .run = [](const Vars& v) { return ag::mul(v[0], v[0]); }});
    t.push_back({.op = "affine", .kernels = {"affine"}, .label = "-1.5 x + 0.25", .inputs = {a}, .grad = {true},
                 .run = [](const Vars& v) { return ag::affine(v[0], -1.5f, 0.25f); }});
    // no backward: in-place accumulation, rounding to bfloat16 (bit-equal on every device)
    t.push_back({.op = "add_", .kernels = {"axpby"}, .label = "[1000]",
                 .inputs = {uniform(Shape{1000}, 16, -1, 1), uniform(Shape{1000}, 17, -1, 1)},
                 .run = [](const Vars& v) {
                     ops::add_(v[0].value(), v[1].value(), 0.25f);
                     return v[0];
                 }});
    t.push_back({.op = "round_bf16", .kernels = {"round_bf16"}, .label = "[4099]",
                 .inputs = {uniform(Shape{4099}, 9, -3, 3)},
                 .run = [](const Vars& v) { return Var(ops::round_bf16(v[0].value())); }, .out_tol = {0, 0}});
}

void linear_and_shapes(std::vector<OpCase>& t) {
    const Tensor x = normal(Shape{5, 7}, 51), w = normal(Shape{3, 7}, 52), b = normal(Shape{3}, 53);
    t.push_back({.op = "linear", .kernels = {"linear_forward", "linear_backward"}, .label = "bias", .inputs = {x, w, b},
                 .grad = {true, true, true}, .run = [](const Vars& v) { return ag::linear(v[0], v[1], &v[2]); }});
    t.push_back({.op = "linear", .kernels = {"linear_forward", "linear_backward"}, .label = "no bias", .inputs = {x, w},
                 .grad = {true, true}, .run = [](const Vars& v) { return ag::linear(v[0], v[1], nullptr); }});
    const Tensor a = normal(Shape{2, 3, 2}, 61), c = normal(Shape{3, 3, 2}, 63);
    t.push_back({.op = "concat", .kernels = {"copy_strided"}, .label = "dim 1", .inputs = {a, normal(Shape{2, 1, 2}, 62)},
                 .grad = {true, true}, .run = [](const Vars& v) { return ag::concat({v[0], v[1]}, 1); }});
    t.push_back({.op = "concat", .kernels = {"copy_strided"}, .label = "dim 0", .inputs = {a, c}, .grad = {true, true},
                 .run = [](const Vars& v) { return ag::concat({v[0], v[1]}, 0); }});
    t.push_back({.op = "reshape", .kernels = {}, .label = "[2,3,2] -> [6,2]", .inputs = {a}, .grad = {true},
                 .run = [](const Vars& v) { return ag::reshape(v[0], Shape{6, 2}); }});
    t.push_back({.op = "slice", .kernels = {"copy_strided"}, .label = "rows 1-3", .inputs = {c}, .grad = {true},
                 .run = [](const Vars& v) { return ag::slice(v[0], 1, 3); }});
    t.push_back({.op = "gather_rows", .kernels = {"gather_rows", "scatter_add_rows"}, .label = "repeats",
                 .inputs = {c}, .grad = {true}, .run = [](const Vars& v) { return ag::gather_rows(v[0], {2, 0, 2, 1}); }});
}

void rows_and_reductions(std::vector<OpCase>& t) {
    for (int64_t d : {6, 300}) {  // rows within one block of threads and over it
        const Tensor a = normal(Shape{4, d}, 71), b = normal(Shape{4, d}, 72);
        const std::string label = "[4," + std::to_string(d) + "]";
        t.push_back({.op = "l2_normalize", .kernels = {"l2_normalize_forward", "l2_normalize_backward"},
                     .label = label, .inputs = {a}, .grad = {true},
                     .run = [](const Vars& v) { return ag::l2_normalize(v[0]); }, .grad_tol = {1e-3}});
        t.push_back({.op = "cosine_similarity", .kernels = {"cosine_similarity_forward", "cosine_similarity_backward"},
                     .label = label, .inputs = {a, b}, .grad = {true, true},
                     .run = [](const Vars& v) { return ag::cosine_similarity(v[0], v[1]); }, .grad_tol = {1e-3}});
    }
    // one side constant (stop-gradient), as in the BYOL losses
    t.push_back({.op = "cosine_similarity", .kernels = {"cosine_similarity_forward", "cosine_similarity_backward"},
                 .label = "stop-gradient", .inputs = {normal(Shape{4, 6}, 71), normal(Shape{4, 6}, 72)},
                 .grad = {true, false}, .run = [](const Vars& v) { return ag::cosine_similarity(v[0], v[1]); },
                 .grad_tol = {1e-3}});
    const Tensor a = normal(Shape{3, 4, 2}, 81);
    t.push_back({.op = "sum", .kernels = {"sum_all", "sum_dim_backward"}, .label = "[3,4,2]", .inputs = {a},
                 .grad = {true}, .run = [](const Vars& v) { return ag::sum(v[0]); }});
    // many blocks' partial sums; a finite difference cannot resolve one term of 100k
    t.push_back({.op = "sum", .kernels = {"sum_all", "sum_dim_backward"}, .label = "[100003]",
                 .inputs = {uniform(Shape{100003}, 31, -1, 1)}, .grad = {true},
                 .run = [](const Vars& v) { return ag::sum(v[0]); }, .gradcheck = false, .out_tol = {1e-5f, 1e-3f}});
    t.push_back({.op = "mean", .kernels = {"sum_all", "sum_dim_backward", "affine"}, .label = "[3,4,2]", .inputs = {a},
                 .grad = {true}, .run = [](const Vars& v) { return ag::mean(v[0]); }});
    for (int dim = 0; dim < 3; ++dim)
        t.push_back({.op = "sum_dim", .kernels = {"sum_dim", "sum_dim_backward"}, .label = "dim " + std::to_string(dim),
                     .inputs = {a}, .grad = {true}, .run = [dim](const Vars& v) { return ag::sum_dim(v[0], dim); }});
}

void optimisers(std::vector<OpCase>& t) {
    // three Adam steps on a flat buffer: inputs param, grad, m, v (all but grad updated in place)
    const math::AdamStep st{1e-3f, 0.9f, 0.99f, 1e-8f, 1e-4f, 1 - 0.9f * 0.9f, std::sqrt(1 - 0.99f * 0.99f)};
    t.push_back({.op = "adam_step", .kernels = {"adam_step"}, .label = "[5000] x3",
                 .inputs = {uniform(Shape{5000}, 40, -1, 1), uniform(Shape{5000}, 41, -1, 1),
                            uniform(Shape{5000}, 42, 0, 0.1f), uniform(Shape{5000}, 43, 0, 0.1f)},
                 .run = [st](const Vars& v) {
                     for (int i = 0; i < 3; ++i) ops::adam_step(v[0].value(), v[1].value(), v[2].value(), v[3].value(), st);
                     return v[0];
                 }});
    t.push_back({.op = "ema_update", .kernels = {"ema_update"}, .label = "[5000]",
                 .inputs = {uniform(Shape{5000}, 44, -1, 1), uniform(Shape{5000}, 45, -1, 1)},
                 .run = [](const Vars& v) {
                     ops::ema_update(v[0].value(), v[1].value(), 0.99f);
                     return v[0];
                 }});
}

void density(std::vector<OpCase>& t) {
    // the Gaussian density: fit on the first input's rows, score the second's; no backward. The CPU
    // scores in double (n < d/2: through the low-rank form), CUDA in float32 through the full factor
    for (int64_t n : {40, 5}) {
        const int64_t d = 24;
        t.push_back({.op = "density_fit + density_score", .kernels = {"density_fit", "density_score"},
                     .label = "fit [" + std::to_string(n) + "," + std::to_string(d) + "], score [33," + std::to_string(d) + "]",
                     .inputs = {normal(Shape{n, d}, 400 + static_cast<uint64_t>(n)), normal(Shape{33, d}, 401)},
                     .run = [](const Vars& v) {
                         const ops::DensityFit g = ops::density_fit(v[0].value(), {});
                         FSAD_CHECK(g.info == 0, "density case: the covariance is not positive definite");
                         ops::DensityCache cache;
                         return Var(ops::density_score(v[1].value(), g, cache, true));
                     },
                     .out_tol = {1e-3f, 1e-4f}});
    }
}

void patch_scoring(std::vector<OpCase>& t) {
    // the patch scorers' kernels (method/patch.hpp); no backward
    t.push_back({.op = "resize_bilinear", .kernels = {"resize_bilinear"}, .label = "[2,3,7,5] up to 14x11",
                 .inputs = {uniform(Shape{2, 3, 7, 5}, 500, -1, 1)},
                 .run = [](const Vars& v) { return Var(ops::resize_bilinear(v[0].value(), 14, 11)); }});
    t.push_back({.op = "resize_bilinear", .kernels = {"resize_bilinear"}, .label = "[2,9,12] down to 4x5",
                 .inputs = {uniform(Shape{2, 9, 12}, 501, -1, 1)},
                 .run = [](const Vars& v) { return Var(ops::resize_bilinear(v[0].value(), 4, 5)); }});
    t.push_back({.op = "channels_last", .kernels = {"channels_last"}, .label = "[2,5,3,4]",
                 .inputs = {uniform(Shape{2, 5, 3, 4}, 502, -1, 1)},
                 .run = [](const Vars& v) { return Var(ops::channels_last(v[0].value())); }, .out_tol = {0, 0}});
    // queries over two of the CPU's 512-row chunks; the bank's squared norms as an input
    const Tensor bank = normal(Shape{257, 16}, 503);
    Tensor sq = Tensor::empty(Shape{257});
    for (int64_t j = 0; j < 257; ++j) {
        double s = 0;
        for (int64_t k = 0; k < 16; ++k) s += double(bank.data()[j * 16 + k]) * bank.data()[j * 16 + k];
        sq.data()[j] = static_cast<float>(s);
    }
    // sigma 1.5: radius 6, wider than the 5-row planes (reflections of reflections)
    t.push_back({.op = "gaussian_blur", .kernels = {"gaussian_blur"}, .label = "[2,5,9] sigma 1.5",
                 .inputs = {uniform(Shape{2, 5, 9}, 505, -1, 1)},
                 .run = [](const Vars& v) { return Var(ops::gaussian_blur(v[0].value(), 1.5)); }});
    t.push_back({.op = "gaussian_blur", .kernels = {"gaussian_blur"}, .label = "[1,1,40,33] sigma 4",
                 .inputs = {uniform(Shape{1, 1, 40, 33}, 506, 0, 3)},
                 .run = [](const Vars& v) { return Var(ops::gaussian_blur(v[0].value(), 4.0)); }});
    t.push_back({.op = "row_max", .kernels = {"row_max"}, .label = "[7,1000]", .inputs = {uniform(Shape{7, 1000}, 507, -5, 5)},
                 .run = [](const Vars& v) { return Var(ops::row_max(v[0].value())); }, .out_tol = {0, 0}});
    t.push_back({.op = "nearest_distance", .kernels = {"nearest_distance"}, .label = "[1100,16] to [257,16]",
                 .inputs = {normal(Shape{1100, 16}, 504), bank, sq},
                 .run = [](const Vars& v) { return Var(ops::nearest_distance(v[0].value(), v[1].value(), v[2].value())); }});
}

void image_sets(std::vector<OpCase>& t) {
    // the fine-tuning's views (method/augment.hpp): two images of different sizes packed in one
    // tensor (plus 5 unused values at the end), values in [0, 1]; no backward
    using ops::PackedImage;
    const std::vector<PackedImage> two = ops::pack_images({{13, 17}, {8, 9}});
    const int64_t n2 = 3 * (13 * 17 + 8 * 9) + 5;
    t.push_back({.op = "crop_resize_images", .kernels = {"crop_resize_images"},
                 .label = "[3,13,17] + [3,8,9]: 3 crops (fractional, shrunk 2x+ with flips, enlarged)",
                 .inputs = {uniform(Shape{n2}, 600, 0, 1)}, .run = [two](const Vars& v) {
                     return Var(ops::crop_resize_images(v[0].value(), two,
                                                        {{.image = 0, .y0 = 1.5, .x0 = 0.25, .h = 10, .w = 12.5, .out_h = 7, .out_w = 6},
                                                         {.image = 0, .y0 = 0, .x0 = 0, .h = 13, .w = 17, .out_h = 4, .out_w = 5, .hflip = true, .vflip = true},
                                                         {.image = 1, .y0 = 2, .x0 = 3, .h = 5, .w = 4, .out_h = 11, .out_w = 9, .hflip = true}}));
                 }});
    t.push_back({.op = "rotate_images", .kernels = {"rotate_images"}, .label = "[3,13,17] by 17 deg + [3,8,9] by -40 deg",
                 .inputs = {uniform(Shape{n2}, 601, 0, 1)},
                 .run = [two](const Vars& v) { return Var(ops::rotate_images(v[0].value(), two, {17.0f, -40.0f})); }});
    // the six colour transforms, one per image, on images that share nothing but the tensor
    const std::vector<PackedImage> six = ops::pack_images(std::vector<std::pair<int64_t, int64_t>>(6, {7, 19}));
    const std::vector<ops::ColourOp> colours = {{math::Colour::Brightness, 1.3f}, {math::Colour::Contrast, 0.7f},
                                                {math::Colour::Saturation, 1.6f}, {math::Colour::Hue, -0.2f},
                                                {math::Colour::Grayscale, 0}, {math::Colour::None, 0}};
    t.push_back({.op = "colour_images", .kernels = {"colour_images"}, .label = "6 x [3,7,19]: each transform",
                 .inputs = {uniform(Shape{6 * 3 * 7 * 19}, 602, 0, 1)},
                 .run = [six, colours](const Vars& v) { return Var(ops::colour_images(v[0].value(), six, colours)); }});
    // radius 6 on a 5-row image (reflections of reflections) and an image left as it is
    const std::vector<PackedImage> blur = ops::pack_images({{5, 14}, {9, 9}, {12, 6}});
    t.push_back({.op = "blur_images", .kernels = {"blur_images"}, .label = "[3,5,14] sigma 2, [3,9,9] none, [3,12,6] sigma 0.6",
                 .inputs = {uniform(Shape{3 * (5 * 14 + 81 + 72)}, 603, 0, 1)}, .run = [blur](const Vars& v) {
                     return Var(ops::blur_images(v[0].value(), blur,
                                                 {imgproc::gaussian_taps(2.0f), {}, imgproc::gaussian_taps(0.6f)}));
                 }});
    // CutPaste (partly outside), a rotated scar, an image without a job; the output is the
    // destination after the paste (the input itself is left alone: the op runs on a copy)
    const std::vector<PackedImage> dst = ops::pack_images({{16, 18}, {16, 18}, {16, 18}});
    const std::vector<PackedImage> patches = ops::pack_images({{5, 7}, {9, 3}});
    ops::PasteJob cut, scar, none;
    cut.patch = 0, cut.canvas_h = 5, cut.canvas_w = 7, cut.dy = 13, cut.dx = -2;
    scar.patch = 1, scar.canvas_h = scar.canvas_w = 12, scar.oy = 1, scar.ox = 4, scar.rotate = true, scar.degrees = 31;
    scar.dy = 3, scar.dx = -3;
    t.push_back({.op = "paste_images", .kernels = {"paste_images"}, .label = "CutPaste [3,5,7], scar [3,9,3] at 31 deg, none",
                 .inputs = {uniform(Shape{3 * 3 * 16 * 18}, 604, 0, 1), uniform(Shape{3 * (35 + 27)}, 605, 0, 1)},
                 .run = [dst, patches, cut, scar, none](const Vars& v) {
                     Tensor out = v[0].value().clone();
                     ops::paste_images(out, dst, v[1].value(), patches, {cut, scar, none});
                     return Var(out);
                 }});
    t.push_back({.op = "imagenet_normalize", .kernels = {"imagenet_normalize"}, .label = "[2,3,5,6]",
                 .inputs = {uniform(Shape{2, 3, 5, 6}, 606, 0, 1)},
                 .run = [](const Vars& v) { return Var(ops::imagenet_normalize(v[0].value())); }});
}
}  // namespace

bool OpCase::differentiable() const { return std::find(grad.begin(), grad.end(), true) != grad.end(); }

std::vector<OpCase> op_cases() {
    std::vector<OpCase> t;
    convolutions(t);
    batchnorms(t);
    activations_and_pooling(t);
    elementwise(t);
    linear_and_shapes(t);
    rows_and_reductions(t);
    optimisers(t);
    density(t);
    patch_scoring(t);
    image_sets(t);
    return t;
}

std::vector<Var> vars_on(const OpCase& c, Device d) {
    std::vector<Var> v;
    for (size_t i = 0; i < c.inputs.size(); ++i)
        v.emplace_back(d.is_cuda() ? c.inputs[i].to(d) : c.inputs[i].clone(), i < c.grad.size() && c.grad[i]);
    return v;
}

Tensor output_grad(const Shape& s, Device d) { return normal(s, 999).to(d); }

}  // namespace fsad::test
