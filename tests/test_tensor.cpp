#include <algorithm>
#include <limits>
#include <thread>

#include "helpers.hpp"

using namespace fsad;

TEST_CASE("tensor: creation, views share storage, copies do not") {
    Tensor t = Tensor::from_vector(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
    CHECK(t.numel() == 6);
    Tensor r = t.reshape(Shape{3, 2});
    CHECK(r.same_storage(t));
    r.data()[0] = 10;
    CHECK(t.to_vector()[0] == 10);
    Tensor s = t.slice(1, 2);
    CHECK(s.shape() == Shape{1, 3});
    CHECK(s.to_vector() == std::vector<float>{4, 5, 6});
    CHECK(t[1].shape() == Shape{3});
    Tensor c = t.clone();
    c.data()[1] = -1;
    CHECK(t.to_vector()[1] == 2);
    CHECK(Tensor::full(Shape{2}, 3.5f).to_vector() == std::vector<float>{3.5f, 3.5f});
    CHECK(Tensor::zeros(Shape{4}).to_vector() == std::vector<float>(4, 0.0f));
}

TEST_CASE("tensor: bad shapes and devices are clear errors") {
    Tensor t = Tensor::zeros(Shape{2, 3});
    CHECK_THROWS_WITH_AS(t.reshape(Shape{4, 2}), doctest::Contains("cannot view [2, 3] as [4, 2]"), Error);
    CHECK_THROWS_AS(t.slice(1, 3), Error);
    CHECK_THROWS_WITH_AS(Tensor::from_vector(Shape{2}, {1, 2, 3}), doctest::Contains("3 values for shape [2]"), Error);
    if (!cuda_available()) {  // on a GPU machine these succeed (tests/test_cuda.cpp covers them)
        CHECK_THROWS_WITH_AS(Tensor::zeros(Shape{2}, Device::cuda()), doctest::Contains("CUDA"), Error);
        CHECK_THROWS_AS(Tensor::zeros(Shape{1}).to(Device::cuda()), Error);
    }
    CHECK_THROWS_WITH_AS(Tensor::zeros(Shape{2}, Device::cuda(63)), doctest::Contains("CUDA"), Error);
    CHECK_THROWS_AS(cuda_device_name(63), CudaError);
    CHECK_THROWS_AS(cuda_fp32_peak_tflops(63), CudaError);
    CHECK_THROWS_AS(Shape({1, 2, 3, 4, 5, 6, 7}), Error);
    CHECK_THROWS_AS(parse_device("gpu"), Error);
    CHECK(parse_device("cuda:1") == Device::cuda(1));
}

TEST_CASE("allocator: a repeated size is served from the cache") {
    empty_cache(Device::cpu());
    { Tensor a = Tensor::empty(Shape{12345}); }
    AllocatorStats before = allocator_stats(Device::cpu());
    { Tensor b = Tensor::empty(Shape{12345}); }
    AllocatorStats after = allocator_stats(Device::cpu());
    CHECK(after.reuses == before.reuses + 1);
    CHECK(after.allocations == before.allocations);
}

TEST_CASE("ops: forward values on small hand-checked inputs") {
    // 1 image, 1 channel 3x3, 2x2 kernel of ones -> sums of 2x2 windows
    Tensor x = Tensor::from_vector(Shape{1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
    Tensor w = Tensor::full(Shape{1, 1, 2, 2}, 1.0f);
    CHECK(ops::conv2d_forward(x, w, nullptr, {}).to_vector() == std::vector<float>{12, 16, 24, 28});
    CHECK(ops::maxpool2d_forward(x, {2, 2, 1, 1, 0, 0}).to_vector() == std::vector<float>{5, 6, 8, 9});
    CHECK(ops::global_avgpool_forward(x).item() == doctest::Approx(5.0));
    Tensor a = Tensor::from_vector(Shape{2, 2}, {3, 4, 1, 0});
    CHECK(ops::l2_normalize_forward(a, 1e-12f).to_vector() == std::vector<float>{0.6f, 0.8f, 1, 0});
    Tensor b = Tensor::from_vector(Shape{2, 2}, {4, -3, 2, 0});
    auto c = ops::cosine_similarity_forward(a, b, 1e-8f).to_vector();
    CHECK(c[0] == doctest::Approx(0.0));
    CHECK(c[1] == doctest::Approx(1.0));
    CHECK(ops::sum_all(a).item() == doctest::Approx(8.0));
    CHECK(ops::sum_dim(a, 0).to_vector() == std::vector<float>{4, 4});
    CHECK(ops::sum_dim(a, 1).to_vector() == std::vector<float>{7, 1});
    CHECK(ops::activation_forward(Tensor::from_vector(Shape{3}, {-1, 3, 9}), math::Activation::ReLU6).to_vector() ==
          std::vector<float>{0, 3, 6});
    CHECK(ops::gather_rows(a, {1, 1, 0}).to_vector() == std::vector<float>{1, 0, 1, 0, 3, 4});
    CHECK(ops::concat({a, b}, 1).to_vector() == std::vector<float>{3, 4, 4, -3, 1, 0, 2, 0});
}

TEST_CASE("ops: shape and device mismatches name the op and the shapes") {
    Tensor x = Tensor::zeros(Shape{1, 3, 8, 8});
    CHECK_THROWS_WITH_AS(ops::conv2d_forward(x, Tensor::zeros(Shape{4, 2, 3, 3}), nullptr, {}),
                         doctest::Contains("conv2d_forward: weight [4, 2, 3, 3] expects 2 input channels"), Error);
    CHECK_THROWS_WITH_AS(ops::conv2d_forward(Tensor::zeros(Shape{3, 8, 8}), Tensor::zeros(Shape{4, 3, 3, 3}), nullptr, {}),
                         doctest::Contains("input must have 4 dimensions"), Error);
    CHECK_THROWS_WITH_AS(ops::conv2d_forward(x, Tensor::zeros(Shape{4, 3, 9, 9}), nullptr, {}),
                         doctest::Contains("does not fit"), Error);
    ops::Conv2dParams g3;
    g3.groups = 2;
    CHECK_THROWS_WITH_AS(ops::conv2d_forward(x, Tensor::zeros(Shape{4, 3, 3, 3}), nullptr, g3),
                         doctest::Contains("not divisible by groups"), Error);
    CHECK_THROWS_WITH_AS(ops::linear_forward(Tensor::zeros(Shape{2, 5}), Tensor::zeros(Shape{3, 4}), nullptr),
                         doctest::Contains("linear_forward: input [2, 5] has 5 features, weight [3, 4] expects 4"), Error);
    CHECK_THROWS_WITH_AS(ops::add(Tensor::zeros(Shape{2}), Tensor::zeros(Shape{3})),
                         doctest::Contains("axpby: b has shape [3], expected [2]"), Error);
    Tensor one = Tensor::zeros(Shape{1, 2, 1, 1});
    Tensor g = Tensor::zeros(Shape{2}), rm = Tensor::zeros(Shape{2}), rv = Tensor::full(Shape{2}, 1);
    CHECK_THROWS_WITH_AS(ops::batchnorm_forward_train(one, g, g, rm, rv, 0.1f, 1e-5f, nullptr),
                         doctest::Contains("more than one value per channel"), Error);
    CHECK_THROWS_WITH_AS(ops::batchnorm_forward_eval(x, g, g, rm, rv, 1e-5f), doctest::Contains("weight has shape [2]"),
                         Error);
    CHECK_THROWS_WITH_AS(ops::gather_rows(g, {2}), doctest::Contains("index 2 out of range"), Error);
    CHECK_THROWS_WITH_AS(ops::concat({g, x}, 0), doctest::Contains("incompatible"), Error);
    CHECK_THROWS_AS(ops::maxpool2d_forward(Tensor::zeros(Shape{1, 1, 2, 2}), {3, 3, 1, 1, 0, 0}), Error);
}

namespace {
// Direct 7-loop convolution: the reference for every blocking/threading path of the kernel.
Tensor naive_conv(const Tensor& x, const Tensor& w, const ops::Conv2dParams& p) {
    const int64_t n = x.dim(0), cin = x.dim(1), h = x.dim(2), wd = x.dim(3), cout = w.dim(0), kh = w.dim(2), kw = w.dim(3);
    const int64_t ho = ops::conv_out_size(h, static_cast<int>(kh), p.stride_h, p.pad_h, p.dil_h);
    const int64_t wo = ops::conv_out_size(wd, static_cast<int>(kw), p.stride_w, p.pad_w, p.dil_w);
    const int64_t cg = cin / p.groups, og = cout / p.groups;
    Tensor y = Tensor::zeros(Shape{n, cout, ho, wo});
    for (int64_t b = 0; b < n; ++b)
        for (int64_t o = 0; o < cout; ++o)
            for (int64_t i = 0; i < ho; ++i)
                for (int64_t j = 0; j < wo; ++j) {
                    double s = 0;
                    for (int64_t c = 0; c < cg; ++c)
                        for (int64_t u = 0; u < kh; ++u)
                            for (int64_t v = 0; v < kw; ++v) {
                                int64_t ih = i * p.stride_h - p.pad_h + u * p.dil_h, iw = j * p.stride_w - p.pad_w + v * p.dil_w;
                                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                                s += static_cast<double>(x.data()[((b * cin + (o / og) * cg + c) * h + ih) * wd + iw]) *
                                     w.data()[((o * cg + c) * kh + u) * kw + v];
                            }
                    y.data()[((b * cout + o) * ho + i) * wo + j] = static_cast<float>(s);
                }
    return y;
}
}  // namespace

// Absolute tolerance for convolution outputs of standard deviation `sigma` (sums of products of
// random values): 1e-4 up to sigma 8, growing with sigma beyond; F(4x4) Winograd rounds about 5x
// worse (its transforms carry 1/6, 1/24 and powers of two: winograd.cpp), ~2.5e-5 of sigma.
double conv_atol(double sigma, ops::ConvAlgorithm algo) {
    const double scale = algo == ops::ConvAlgorithm::Winograd4 ? 5.0 * sigma : sigma;
    return 1e-4 * std::max(1.0, scale / 8.0);
}

TEST_CASE("conv2d forward matches a direct convolution on every kernel path and thread count") {
    struct Case {
        Shape x, w;
        ops::Conv2dParams p;
    };
    std::vector<Case> cases = {
        {{1, 3, 17, 13}, {5, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},   // one image, few positions: channels split
        {{1, 4, 30, 30}, {5, 4, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},   // one image, many positions: columns split
        {{9, 8, 5, 5}, {6, 8, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},     // many images per chunk, ragged last chunk
        {{9, 8, 6, 6}, {6, 8, 1, 1}, {2, 2, 0, 0, 1, 1, 1}},     // strided 1x1 (downsample)
        {{3, 16, 40, 40}, {8, 16, 1, 1}, {1, 1, 0, 0, 1, 1, 1}}, // pointwise, one image per chunk
        {{4, 6, 9, 9}, {6, 1, 3, 3}, {2, 2, 1, 1, 1, 1, 6}},     // depthwise
        {{4, 6, 9, 9}, {4, 3, 3, 3}, {1, 1, 2, 2, 2, 2, 2}},     // groups + dilation
        {{3, 20, 7, 9}, {17, 20, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},  // Winograd: odd sizes, ragged tiles
        {{5, 16, 4, 4}, {16, 16, 3, 3}, {1, 1, 0, 0, 1, 1, 1}},  // Winograd: no padding
        {{2, 16, 2, 2}, {24, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},  // Winograd: one tile per image
        {{2, 16, 5, 6}, {16, 16, 3, 3}, {1, 1, 2, 2, 1, 1, 1}},  // Winograd: padding 2
        {{3, 16, 33, 35}, {8, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}}, // Winograd: rows of 16+ tiles (row transforms)
        {{2, 16, 10, 70}, {8, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}}, // Winograd 4x4: 16+ tiles per row, ragged both ways
        {{3, 16, 7, 13}, {9, 16, 3, 3}, {1, 1, 0, 0, 1, 1, 1}},  // Winograd 4x4: 5x11 outputs, narrow
        {{4, 3, 20, 21}, {5, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},   // chunks of large planes: general im2col
        {{5, 3, 19, 18}, {4, 3, 7, 7}, {2, 2, 3, 3, 1, 1, 1}},   // 7x7 stride 2 (the stem), small-plane tables
        {{6, 4, 7, 6}, {6, 4, 3, 2}, {2, 1, 2, 1, 2, 1, 1}},     // small planes: mixed strides, padding, dilation
        {{1, 3, 40, 40}, {4, 3, 7, 7}, {2, 2, 3, 3, 1, 1, 1}},   // stride-2 rows of 20: vector + tail copies
        {{3, 3, 70, 71}, {5, 3, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},   // stride 2 on large planes (general im2col)
        {{9, 16, 2, 2}, {24, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},  // dense matrix (Auto): 2x2 planes
        {{8, 8, 1, 1}, {6, 8, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},     // dense: 1x1 planes (centre tap only)
        {{8, 6, 2, 2}, {5, 6, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},     // dense: stride 2, 2x2 -> 1x1
        {{10, 4, 2, 1}, {3, 4, 3, 3}, {1, 1, 2, 2, 2, 2, 1}},    // dense: 2x1 planes, dilation 2
        // depth >= 128 and wide products: weights packed per call for fsad's kernel (AVX-512 builds)
        {{1, 16, 60, 60}, {37, 16, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},  // one image, many positions, 37 rows
        {{1, 16, 13, 12}, {70, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},  // one image, 156 positions, panels split
        {{4, 64, 7, 7}, {33, 64, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},    // chunks of images
        {{8, 128, 12, 12}, {40, 128, 3, 3}, {1, 1, 1, 1, 1, 1, 1}}, // Winograd F(2x2) products of depth 128, 144+ tiles
    };
    for (auto algo : {ops::ConvAlgorithm::Auto, ops::ConvAlgorithm::Gemm, ops::ConvAlgorithm::Winograd,
                      ops::ConvAlgorithm::Winograd4}) {
        ops::set_conv_algorithm(algo);
        for (int threads : {1, 2, 3}) {
            set_num_threads(threads);
            for (size_t i = 0; i < cases.size(); ++i) {
                Tensor x = test::randn(cases[i].x, 100 + i), w = test::randn(cases[i].w, 200 + i);
                Tensor got = ops::conv2d_forward(x, w, nullptr, cases[i].p);
                Tensor want = naive_conv(x, w, cases[i].p);
                FSAD_CHECK_CLOSE("conv case " + std::to_string(i) + " algorithm " + std::to_string(static_cast<int>(algo)) +
                                     " threads " + std::to_string(threads),
                                 got.to_vector(), want.to_vector(),
                                 conv_atol(std::sqrt(static_cast<double>(w.numel() / w.dim(0))), algo), 1e-4);
            }
        }
    }
    ops::set_conv_algorithm(ops::ConvAlgorithm::Auto);
    set_num_threads(2);
}

TEST_CASE("conv2d backward is the adjoint of the forward on every im2col path: <y, dy> = <x, dx> = <w, dw>") {
    // the convolution is bilinear, so both identities hold exactly up to rounding, at any size
    struct Case {
        Shape x, w;
        ops::Conv2dParams p;
    };
    const std::vector<Case> cases = {
        {{4, 3, 20, 21}, {5, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},  // large planes (general im2col/col2im)
        {{5, 3, 19, 18}, {4, 3, 7, 7}, {2, 2, 3, 3, 1, 1, 1}},  // small planes (index tables)
        {{6, 4, 7, 6}, {6, 4, 3, 2}, {2, 1, 2, 1, 2, 1, 1}},
        {{8, 8, 4, 4}, {8, 8, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
        {{3, 4, 30, 30}, {6, 2, 3, 3}, {1, 1, 1, 1, 1, 1, 2}},  // grouped, large planes
    };
    auto dot = [](const Tensor& a, const Tensor& b) {
        double s = 0;
        for (int64_t i = 0; i < a.numel(); ++i) s += static_cast<double>(a.data()[i]) * b.data()[i];
        return s;
    };
    ops::set_conv_algorithm(ops::ConvAlgorithm::Gemm);
    for (size_t i = 0; i < cases.size(); ++i) {
        Tensor x = test::randn(cases[i].x, 300 + i), w = test::randn(cases[i].w, 400 + i);
        Tensor y = ops::conv2d_forward(x, w, nullptr, cases[i].p);
        Tensor dy = test::randn(y.shape(), 500 + i);
        Tensor dx, dw;
        ops::conv2d_backward(x, w, dy, cases[i].p, &dx, &dw, nullptr);
        const double ydy = dot(y, dy);
        CAPTURE(i);
        CHECK(dot(x, dx) == doctest::Approx(ydy).epsilon(1e-4));
        CHECK(dot(w, dw) == doctest::Approx(ydy).epsilon(1e-4));
    }
    ops::set_conv_algorithm(ops::ConvAlgorithm::Auto);
}

TEST_CASE("conv2d backward: Winograd agrees with im2col+GEMM") {
    struct Case {
        Shape x, w;
        int pad;
    };
    for (const Case& c : {Case{{3, 20, 7, 9}, {17, 20, 3, 3}, 1}, Case{{4, 16, 8, 8}, {32, 16, 3, 3}, 1},
                          Case{{2, 16, 5, 6}, {16, 16, 3, 3}, 2}, Case{{5, 16, 4, 4}, {16, 16, 3, 3}, 0},
                          Case{{3, 16, 33, 35}, {8, 16, 3, 3}, 1}, Case{{4, 16, 2, 2}, {32, 16, 3, 3}, 1},
                          Case{{2, 16, 10, 70}, {8, 16, 3, 3}, 1},
                          // data gradient of depth 128 over 144+ tiles: fsad's packed kernel (AVX-512 builds)
                          Case{{8, 16, 12, 12}, {128, 16, 3, 3}, 1}}) {
        ops::Conv2dParams p;
        p.pad_h = p.pad_w = c.pad;
        Tensor x = test::randn(c.x, 1), w = test::randn(c.w, 2, 0.2f);
        Tensor y = ops::conv2d_forward(x, w, nullptr, p);
        Tensor dy = test::randn(y.shape(), 3);
        Tensor dx1, dw1;
        ops::set_conv_algorithm(ops::ConvAlgorithm::Gemm);
        ops::conv2d_backward(x, w, dy, p, &dx1, &dw1, nullptr);
        // Winograd: F(2x2) for all three passes; Winograd4: F(4x4) data gradient, GEMM filter gradient;
        // Auto: its own mix (the 8x8 case takes the F(2x2) filter gradient)
        for (auto algo : {ops::ConvAlgorithm::Winograd, ops::ConvAlgorithm::Winograd4, ops::ConvAlgorithm::Auto}) {
            Tensor dx2, dw2;
            ops::set_conv_algorithm(algo);
            ops::conv2d_backward(x, w, dy, p, &dx2, &dw2, nullptr);
            const std::string tag = std::to_string(static_cast<int>(algo)) + " " + c.x.str();
            // dx sums cout*9 products of w (std 0.2) and dy (std 1)
            FSAD_CHECK_CLOSE("winograd dx " + tag, dx2.to_vector(), dx1.to_vector(),
                             conv_atol(0.2 * std::sqrt(static_cast<double>(c.w[0] * 9)), algo), 1e-4);
            FSAD_CHECK_CLOSE("winograd dw " + tag, dw2.to_vector(), dw1.to_vector(), 1e-3, 1e-4);
        }
        ops::set_conv_algorithm(ops::ConvAlgorithm::Auto);
    }
}

TEST_CASE("conv2d on tiny planes as a dense matrix agrees with im2col+GEMM; exact zeros stay exact") {
    struct Case {
        Shape x, w;
        ops::Conv2dParams p;
    };
    const std::vector<Case> cases = {
        {{9, 40, 2, 2}, {70, 40, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},  // blocks of 32 channels, ragged last block
        {{8, 8, 1, 1}, {6, 8, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},
        {{8, 6, 2, 2}, {5, 6, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},
        {{10, 4, 2, 1}, {3, 4, 3, 3}, {1, 1, 2, 2, 2, 2, 1}},
    };
    for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        for (size_t i = 0; i < cases.size(); ++i) {
            const Case& c = cases[i];
            Tensor x = test::randn(c.x, 600 + i), w = test::randn(c.w, 700 + i, 0.2f), b = test::randn(Shape{c.w[0]}, 800 + i);
            // zero input pixel (0, 0) everywhere: the taps that read only it get no gradient
            for (int64_t n = 0; n < c.x[0]; ++n)
                for (int64_t ch = 0; ch < c.x[1]; ++ch) x.data()[(n * c.x[1] + ch) * c.x[2] * c.x[3]] = 0.0f;
            ops::set_conv_algorithm(ops::ConvAlgorithm::Gemm);
            Tensor y1 = ops::conv2d_forward(x, w, &b, c.p);
            Tensor dy = test::randn(y1.shape(), 900 + i);
            Tensor dx1, dw1, db1;
            ops::conv2d_backward(x, w, dy, c.p, &dx1, &dw1, &db1);
            ops::set_conv_algorithm(ops::ConvAlgorithm::Auto);
            Tensor y2 = ops::conv2d_forward(x, w, &b, c.p);
            Tensor dx2, dw2, db2;
            ops::conv2d_backward(x, w, dy, c.p, &dx2, &dw2, &db2);
            const std::string tag = "case " + std::to_string(i) + " threads " + std::to_string(threads);
            FSAD_CHECK_CLOSE("dense y " + tag, y2.to_vector(), y1.to_vector(), 1e-4, 1e-4);
            FSAD_CHECK_CLOSE("dense dx " + tag, dx2.to_vector(), dx1.to_vector(), 1e-4, 1e-4);
            FSAD_CHECK_CLOSE("dense dw " + tag, dw2.to_vector(), dw1.to_vector(), 1e-4, 1e-4);
            CHECK(db2.to_vector() == db1.to_vector());
            // wherever im2col + GEMM gives an exact zero (a tap that met only the zeroed pixel or
            // padding), the dense path does too
            int zeros = 0;
            for (int64_t k = 0; k < dw1.numel(); ++k)
                if (dw1.data()[k] == 0.0f) {
                    ++zeros;
                    CHECK(dw2.data()[k] == 0.0f);
                }
            if (i == 0) CHECK(zeros == c.w[0] * c.w[1]);  // tap (0, 0) of every filter
        }
    }
    set_num_threads(2);
}

TEST_CASE("conv2d_bn_eval_forward equals the convolution followed by eval-mode batch norm on every path") {
    struct Case {
        Shape x, w;
        ops::Conv2dParams p;
    };
    const std::vector<Case> cases = {
        {{1, 3, 17, 13}, {5, 3, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},    // one image, few positions: channels split
        {{1, 4, 30, 30}, {5, 4, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},    // one image, many positions: columns split
        {{9, 8, 5, 5}, {6, 8, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},      // chunks of images
        {{3, 16, 40, 40}, {8, 16, 1, 1}, {1, 1, 0, 0, 1, 1, 1}},  // pointwise
        {{4, 6, 9, 9}, {6, 1, 3, 3}, {2, 2, 1, 1, 1, 1, 6}},      // depthwise
        {{4, 6, 9, 9}, {4, 3, 3, 3}, {1, 1, 2, 2, 2, 2, 2}},      // groups + dilation
        {{3, 20, 7, 9}, {17, 20, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},   // Winograd F(2x2)
        {{1, 16, 30, 30}, {8, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},  // one image, many positions (Auto: too few outputs for Winograd)
        {{9, 16, 2, 2}, {24, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},   // dense matrix
        // depth >= 128: with prepared weights, the packed GEMM (rows not a multiple of its 32-row panels)
        {{1, 32, 9, 9}, {40, 32, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},      // few positions: panels or columns split
        {{1, 16, 60, 60}, {37, 16, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},    // many positions: columns split
        {{5, 64, 6, 6}, {33, 64, 3, 3}, {2, 2, 1, 1, 1, 1, 1}},      // chunks of images
        {{1, 128, 7, 7}, {70, 128, 1, 1}, {1, 1, 0, 0, 1, 1, 1}},    // pointwise, no im2col
        {{2, 256, 5, 5}, {64, 128, 1, 1}, {1, 1, 0, 0, 1, 1, 2}},    // grouped: not packed
        {{1, 16, 30, 30}, {16, 16, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},    // Winograd F(4x4), one image split
        {{8, 128, 12, 12}, {40, 128, 3, 3}, {1, 1, 1, 1, 1, 1, 1}},  // Winograd F(2x2), products by the packed kernel
    };
    for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        for (size_t i = 0; i < cases.size(); ++i) {
            const Case& c = cases[i];
            const int64_t co = c.w[0];
            Tensor x = test::randn(c.x, 1000 + i), w = test::randn(c.w, 1100 + i, 0.3f);
            Tensor gamma = test::randn(Shape{co}, 1200 + i), beta = test::randn(Shape{co}, 1300 + i);
            Tensor mean = test::randn(Shape{co}, 1400 + i), var = Rng(1500 + i).uniform_tensor(Shape{co}, 0.2f, 2.0f);
            for (auto act : {math::Activation::Identity, math::Activation::ReLU, math::Activation::ReLU6}) {
                Tensor want = ops::batchnorm_forward_eval(ops::conv2d_forward(x, w, nullptr, c.p), gamma, beta, mean, var,
                                                          1e-5f, act);
                Tensor got = ops::conv2d_bn_eval_forward(x, w, gamma, beta, mean, var, 1e-5f, c.p, act);
                FSAD_CHECK_CLOSE("fused case " + std::to_string(i) + " act " + std::to_string(static_cast<int>(act)) +
                                     " threads " + std::to_string(threads),
                                 got.to_vector(), want.to_vector(), 1e-5, 1e-5);
                // with a residual added before the activation (a ResNet block's end)
                Tensor r = test::randn(want.shape(), 1600 + i);
                Tensor want_r = ops::activation_forward(
                    ops::axpby(1.0f,
                               ops::batchnorm_forward_eval(ops::conv2d_forward(x, w, nullptr, c.p), gamma, beta, mean, var,
                                                           1e-5f, math::Activation::Identity),
                               1.0f, r),
                    act);
                Tensor got_r = ops::conv2d_bn_eval_forward(x, w, gamma, beta, mean, var, 1e-5f, c.p, act, &r);
                FSAD_CHECK_CLOSE("fused + residual case " + std::to_string(i) + " act " +
                                     std::to_string(static_cast<int>(act)) + " threads " + std::to_string(threads),
                                 got_r.to_vector(), want_r.to_vector(), 1e-5, 1e-5);
                // with prepared weights (packed GEMM panels, Winograd filters): built on the first
                // call, reused on the second
                ops::PreparedConv prep(w, c.p);
                for (int call = 0; call < 2; ++call) {
                    Tensor got_p = ops::conv2d_bn_eval_forward(x, w, gamma, beta, mean, var, 1e-5f, c.p, act, &r, &prep);
                    FSAD_CHECK_CLOSE("prepared case " + std::to_string(i) + " act " +
                                         std::to_string(static_cast<int>(act)) + " threads " +
                                         std::to_string(threads) + " call " + std::to_string(call),
                                     got_p.to_vector(), want_r.to_vector(), 1e-5, 1e-5);
                }
                // what gets prepared: Winograd filters where Auto picks Winograd (cases 6, 14, 15; case 9 with
                // one thread, batch 1 >= threads: F(2x2)), packed panels for ungrouped depth >= 128
                // (cases 7 and 9-12; 7 is too narrow for Winograd under Auto: 8 output channels)
                const bool winograd = i == 6 || i == 14 || i == 15 || (i == 9 && threads == 1),
                           packed = (i == 7 || (i >= 9 && i <= 12)) && ops::conv_packing_available();
                CHECK_MESSAGE((prep.bytes() > 0) == (winograd || packed), "case ", i, " prepared ", prep.bytes(),
                              " bytes");
            }
        }
    }
    set_num_threads(2);
    Tensor x = test::randn(Shape{2, 4, 8, 8}, 1), w = test::randn(Shape{6, 4, 3, 3}, 2);
    CHECK_THROWS_WITH_AS(ops::conv2d_bn_eval_forward(x, w, Tensor::zeros(Shape{5}), Tensor::zeros(Shape{6}),
                                                     Tensor::zeros(Shape{6}), Tensor::zeros(Shape{6}), 1e-5f, {}),
                         doctest::Contains("conv2d_bn_eval_forward"), Error);
    Tensor bad_r = Tensor::zeros(Shape{2, 6, 5, 5});
    CHECK_THROWS_WITH_AS(ops::conv2d_bn_eval_forward(x, w, Tensor::zeros(Shape{6}), Tensor::zeros(Shape{6}),
                                                     Tensor::zeros(Shape{6}), Tensor::full(Shape{6}, 1.0f), 1e-5f, {},
                                                     math::Activation::ReLU, &bad_r),
                         doctest::Contains("residual"), Error);
}

TEST_CASE("prepared convolution weights: used only for the weights they were made from, unchanged") {
    const ops::Conv2dParams p{1, 1, 1, 1, 1, 1, 1};
    Tensor x = test::randn(Shape{1, 32, 6, 6}, 1), w = test::randn(Shape{40, 32, 3, 3}, 2, 0.2f);
    Tensor gamma = Tensor::full(Shape{40}, 1.0f), beta = Tensor::zeros(Shape{40}), mean = Tensor::zeros(Shape{40}),
           var = Tensor::full(Shape{40}, 1.0f);
    auto run = [&](const Tensor& wt, const ops::Conv2dParams& pp, const ops::PreparedConv& prep) {
        return ops::conv2d_bn_eval_forward(x, wt, gamma, beta, mean, var, 1e-5f, pp, math::Activation::Identity,
                                           nullptr, &prep);
    };
    ops::PreparedConv prep(w, p);
    Tensor before = run(w, p, prep);
    // the same values in another tensor, or other convolution parameters: another convolution
    CHECK_THROWS_WITH_AS(run(w.clone(), p, prep), doctest::Contains("another convolution"), Error);
    ops::Conv2dParams p2 = p;
    p2.pad_h = p2.pad_w = 0;
    CHECK_THROWS_WITH_AS(run(w, p2, prep), doctest::Contains("another convolution"), Error);
    // a changed weight (the first is always sampled): refused, not silently stale
    const float w0 = w.data()[0];
    w.data()[0] = w0 + 1.0f;
    CHECK_THROWS_WITH_AS(run(w, p, prep), doctest::Contains("changed after they were prepared"), Error);
    w.data()[0] = w0;
    FSAD_CHECK_CLOSE("restored weights", run(w, p, prep).to_vector(), before.to_vector(), 0, 0);
    // prepared again after the change: the new weights are used
    w.data()[0] = w0 + 1.0f;
    ops::PreparedConv again(w, p);
    FSAD_CHECK_CLOSE("re-prepared", run(w, p, again).to_vector(),
                     ops::conv2d_bn_eval_forward(x, w, gamma, beta, mean, var, 1e-5f, p).to_vector(), 1e-5, 1e-5);
    CHECK_THROWS_WITH_AS(ops::PreparedConv(Tensor::zeros(Shape{4, 4}), p), doctest::Contains("conv2d_prepare"), Error);
}

TEST_CASE("CUDA tensors: a clear error when there is no backend or no GPU") {
    // the library versions need no GPU: what a GPU machine's loader picked up shows in `fsad info`
    if (cuda_built()) {
        const std::string v = cuda_versions();
        CAPTURE(v);
        CHECK(v.find("CUDA runtime 1") != std::string::npos);
        CHECK(v.find(", cuDNN 9.") != std::string::npos);
        CHECK(v.find(", cuBLAS ") != std::string::npos);
    } else {
        CHECK(cuda_versions().empty());
    }
    if (cuda_available()) return;  // the parity suite (tests/test_cuda.cpp) covers a GPU machine
    try {
        Tensor t = Tensor::empty(Shape{4}, Device::cuda(0));
        FAIL("a CUDA tensor was created without a GPU");
    } catch (const Error& e) {
        const std::string msg = e.what();
        CAPTURE(msg);
        if (cuda_built()) CHECK(msg.find("no CUDA device is available") != std::string::npos);
        else CHECK(msg.find("no CUDA backend") != std::string::npos);
    }
}

TEST_CASE("maxpool2d backward routes each gradient to the first maximum of its window in row-major order") {
    const std::vector<ops::Pool2dParams> params = {
        {3, 3, 2, 2, 1, 1}, {2, 2, 2, 2, 0, 0}, {3, 2, 1, 2, 1, 0}, {1, 1, 1, 1, 0, 0}, {4, 3, 3, 2, 2, 1}};
    // values from {0, 1, 2}: many windows hold their maximum more than once, in different rows
    // and columns (the case where a column-first search would pick another element)
    Tensor x = test::randu(Shape{2, 3, 11, 13}, 78, 0.0f, 3.0f);
    for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = std::floor(x.data()[i]);
    for (const auto& p : params) {
        const int64_t h = 11, w = 13;
        const Tensor y = ops::maxpool2d_forward(x, p);
        const int64_t ho = y.dim(2), wo = y.dim(3);
        const Tensor dy = test::randn(y.shape(), 79);
        const Tensor dx = ops::maxpool2d_backward(x, dy, p);
        std::vector<float> want(static_cast<size_t>(x.numel()), 0.0f);
        for (int64_t k = 0; k < 6; ++k)
            for (int64_t oh = 0; oh < ho; ++oh)
                for (int64_t ow = 0; ow < wo; ++ow) {
                    int64_t arg = -1;
                    for (int64_t i = 0; i < p.kh; ++i)
                        for (int64_t j = 0; j < p.kw; ++j) {
                            const int64_t ih = oh * p.stride_h - p.pad_h + i, iw = ow * p.stride_w - p.pad_w + j;
                            if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                            const int64_t at = (k * h + ih) * w + iw;
                            if (arg < 0 || x.data()[at] > x.data()[arg]) arg = at;
                        }
                    want[static_cast<size_t>(arg)] += dy.data()[(k * ho + oh) * wo + ow];
                }
        CAPTURE(p.kh);
        CAPTURE(p.stride_h);
        FSAD_CHECK_CLOSE("maxpool backward", dx.to_vector(), want, 1e-6, 0);
    }
}

TEST_CASE("maxpool2d forward matches a direct window maximum (padding, strides, rectangular windows)") {
    const std::vector<ops::Pool2dParams> params = {
        {3, 3, 2, 2, 1, 1}, {2, 2, 2, 2, 0, 0}, {3, 2, 1, 2, 1, 0}, {1, 1, 1, 1, 0, 0}, {4, 3, 3, 2, 2, 1}};
    Tensor x = test::randn(Shape{2, 3, 11, 13}, 77);
    for (int64_t i = 0; i < x.numel(); i += 5) x.data()[i] = std::max(x.data()[i], 0.0f);  // some ties
    for (const auto& p : params) {
        Tensor y = ops::maxpool2d_forward(x, p);
        const int64_t h = 11, w = 13, ho = y.dim(2), wo = y.dim(3);
        std::vector<float> want;
        for (int64_t k = 0; k < 6; ++k)
            for (int64_t oh = 0; oh < ho; ++oh)
                for (int64_t ow = 0; ow < wo; ++ow) {
                    float best = -std::numeric_limits<float>::infinity();
                    for (int64_t i = 0; i < p.kh; ++i)
                        for (int64_t j = 0; j < p.kw; ++j) {
                            const int64_t ih = oh * p.stride_h - p.pad_h + i, iw = ow * p.stride_w - p.pad_w + j;
                            if (ih >= 0 && ih < h && iw >= 0 && iw < w) best = std::max(best, x.data()[(k * h + ih) * w + iw]);
                        }
                    want.push_back(best);
                }
        CHECK(y.to_vector() == want);
    }
}

TEST_CASE("precision: names parse both ways, a bad name is refused; the CPU ignores TF32 and computes BF16's definition") {
    using ops::Precision;
    for (Precision p : {Precision::FP32, Precision::TF32, Precision::BF16}) CHECK(ops::parse_precision(ops::precision_name(p)) == p);
    CHECK_THROWS_WITH_AS(ops::parse_precision("fp16"), doctest::Contains("fp32, tf32 or bf16"), Error);
    CHECK(ops::precision() == Precision::FP32);  // the default
    Tensor x = test::randn(Shape{2, 3, 9, 9}, 1), w = test::randn(Shape{4, 3, 3, 3}, 2), b = test::randn(Shape{4}, 3);
    ops::Conv2dParams p;
    p.pad_h = p.pad_w = 1;
    const std::vector<float> fp32 = ops::conv2d_forward(x, w, nullptr, p).to_vector();
    ops::set_allow_tf32(true);
    CHECK(ops::precision() == Precision::TF32);
    CHECK(ops::conv2d_forward(x, w, nullptr, p).to_vector() == fp32);
    ops::set_precision(Precision::BF16);
    CHECK(ops::allow_tf32());  // matrix products run as in TF32 (on CUDA)
    Tensor y = ops::conv2d_forward(x, w, nullptr, p), yb = ops::conv2d_forward(x, w, &b, p);
    Tensor dy = test::randn(y.shape(), 4), dx, dw, db;
    ops::conv2d_backward(x, w, dy, p, &dx, &dw, &db);
    ops::set_precision(Precision::FP32);
    CHECK_FALSE(ops::allow_tf32());
    // BF16: bf16(conv(bf16(x), bf16(w))), the bias added after; gradients likewise, db in float32
    const Tensor xr = ops::round_bf16(x), wr = ops::round_bf16(w), dyr = ops::round_bf16(dy);
    CHECK(y.to_vector() == ops::round_bf16(ops::conv2d_forward(xr, wr, nullptr, p)).to_vector());
    CHECK(y.to_vector() != fp32);
    const std::vector<float> yv = y.to_vector(), ybv = yb.to_vector(), bv = b.to_vector();
    size_t wrong = 0;
    for (size_t i = 0; i < yv.size(); ++i) wrong += ybv[i] != yv[i] + bv[(i / 81) % 4];
    CHECK(wrong == 0);
    Tensor dx2, dw2, db2;
    ops::conv2d_backward(xr, wr, dyr, p, &dx2, &dw2, nullptr);
    ops::conv2d_backward(x, w, dy, p, nullptr, nullptr, &db2);
    CHECK(dx.to_vector() == ops::round_bf16(dx2).to_vector());
    CHECK(dw.to_vector() == ops::round_bf16(dw2).to_vector());
    CHECK(db.to_vector() == db2.to_vector());
}

TEST_CASE("precision: a PrecisionScope sets the calling thread's precision, nests, and leaves other threads alone") {
    using ops::Precision;
    REQUIRE(ops::precision() == Precision::FP32);
    Tensor x = test::randn(Shape{1, 2, 7, 7}, 5), w = test::randn(Shape{3, 2, 3, 3}, 6);
    const ops::Conv2dParams p;
    const std::vector<float> fp32 = ops::conv2d_forward(x, w, nullptr, p).to_vector();
    const std::vector<float> bf16 = ops::round_bf16(ops::conv2d_forward(ops::round_bf16(x), ops::round_bf16(w), nullptr, p)).to_vector();
    REQUIRE(fp32 != bf16);
    {
        ops::PrecisionScope s(Precision::BF16);
        CHECK(ops::precision() == Precision::BF16);
        CHECK(ops::conv2d_forward(x, w, nullptr, p).to_vector() == bf16);
        Precision other = Precision::TF32;
        std::thread([&] { other = ops::precision(); }).join();
        CHECK(other == Precision::FP32);  // another thread keeps the process-wide setting
        {
            ops::PrecisionScope inner(Precision::FP32);
            CHECK(ops::precision() == Precision::FP32);
            CHECK(ops::conv2d_forward(x, w, nullptr, p).to_vector() == fp32);
        }
        CHECK(ops::precision() == Precision::BF16);
        ops::set_precision(Precision::TF32);  // the process-wide setting changes underneath the scope
        CHECK(ops::precision() == Precision::BF16);
    }
    CHECK(ops::precision() == Precision::TF32);  // the scope gone, the process-wide setting again
    ops::set_precision(Precision::FP32);
    CHECK(ops::conv2d_forward(x, w, nullptr, p).to_vector() == fp32);
}

TEST_CASE("blas: OpenBLAS runs kernels as wide as the processor's vector unit, and they compute") {
    const BlasInfo b = blas_info();
    CAPTURE(b.library);
    CAPTURE(b.core);
    CAPTURE(b.processor);
    CAPTURE(b.chosen_by);
    CHECK(b.library.find("OpenBLAS") != std::string::npos);
    CHECK_FALSE(b.core.empty());
    const bool wide = b.processor == "AVX2" || b.processor.rfind("AVX-512", 0) == 0;
    // the fallback fsad replaces (parallel.hpp): a processor with AVX2/FMA never runs OpenBLAS's
    // generic SSE3 kernels unless the user asked for them
    // (only an OpenBLAS built with DYNAMIC_ARCH, as Debian's is, can switch: one built for a
    // single target keeps it, and fsad says so)
    if (wide && b.chosen_by != "OPENBLAS_CORETYPE") {
        if (b.library.find("DYNAMIC_ARCH") != std::string::npos) {
            CHECK(b.core != "Prescott");
            if (b.chosen_by.rfind("fsad", 0) == 0)
                CHECK((b.core == "Haswell" || b.core == "SkylakeX" || b.core == "Cooperlake"));
        } else if (b.core == "Prescott") {
            CHECK(b.chosen_by.find("cannot switch") != std::string::npos);
        }
    }
    // whatever was chosen computes right: a 67x45 by 45x33 product (odd sizes hit the kernels'
    // edge paths) against a double-precision loop
    const Tensor x = test::randn(Shape{67, 45}, 11), w = test::randn(Shape{33, 45}, 12);
    const Tensor y = ops::linear_forward(x, w, nullptr);
    const float* px = x.data();
    const float* pw = w.data();
    const float* py = y.data();
    double worst = 0;
    for (int i = 0; i < 67; ++i)
        for (int j = 0; j < 33; ++j) {
            double ref = 0;
            for (int k = 0; k < 45; ++k) ref += double(px[i * 45 + k]) * double(pw[j * 45 + k]);
            worst = std::max(worst, std::abs(ref - double(py[i * 33 + j])));
        }
    CHECK(worst < 1e-4);
}
