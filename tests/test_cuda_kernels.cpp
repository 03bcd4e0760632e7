// fsad's own CUDA kernels (src/cuda/*.cuh), with the launch plans the backend uses, run on the
// CPU by the SIMT emulator (tests/simt.hpp) and compared with the CPU ops: every CI run (no GPU)
// checks their indexing, grid-stride and plane-walking loops, block reductions, barriers and
// warp shuffles. Each case runs twice, threads and blocks in forward then reverse order, and
// requires both runs to agree bit for bit (a shared-memory read without its barrier, or any
// order-dependent result, differs). cuDNN/cuBLAS/cuSOLVER calls are not emulated: the density's
// stages between them are checked against direct computations and the CPU density. On a GPU,
// tests/test_cuda.cpp checks the whole backend against the CPU.
#include "simt.hpp"  // before the kernel headers

#include <doctest/doctest.h>

#include <fsad/fsad.hpp>

#include <algorithm>
#include <climits>
#include <cmath>

#include "../src/cuda/augment.cuh"
#include "../src/cuda/batchnorm.cuh"
#include "../src/cuda/density.cuh"
#include "../src/cuda/elementwise.cuh"
#include "../src/cuda/patch.cuh"
#include "../src/cuda/pool.cuh"
#include "helpers.hpp"

using namespace fsad;
namespace kc = fsad::cuda::simt;  // the emulated build of the kernel headers

namespace {

struct Emulated {  // the launcher the kernel headers' sequences take
    template <class... P, class... A>
    void operator()(void (*kernel)(P...), dim3 grid, dim3 block, A&&... args) const {
        simt::Runtime::get().launch(kernel, grid, block, std::forward<A>(args)...);
    }
};

using Vec = std::vector<float>;
Vec vec(const Tensor& t) { return t.to_vector(); }
Tensor rnd(const Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) { return Rng(seed).uniform_tensor(s, lo, hi); }

// Runs f() (which returns the outputs of one emulated run) in forward then reverse order; checks
// the two agree bit for bit and returns the first.
template <class F>
auto both_orders(F&& f) {
    auto& rt = simt::Runtime::get();
    rt.order = simt::Order::Forward;
    auto a = f();
    rt.order = simt::Order::Reverse;
    auto b = f();
    rt.order = simt::Order::Forward;
    CHECK_MESSAGE(a == b, "the result depends on the order threads run in");
    return a;
}

constexpr double kAtol = 1e-5, kRtol = 1e-5;

}  // namespace

// ------------------------------------------------------------------ the emulator itself

namespace {
__global__ void block_sum_k(const int* x, int* out) {
    const int s = kc::block_sum(x[blockIdx.x * blockDim.x + threadIdx.x]);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}
__global__ void divergent_barrier_k(int* out) {
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = 1;
}
__global__ void early_exit_barrier_k(const int* n, int* out) {
    if (static_cast<int>(threadIdx.x) >= *n) return;  // threads past n leave before the barrier
    __syncthreads();
    out[threadIdx.x] = 1;
}
__global__ void partial_warp_shuffle_k(float* out) {
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<float>(threadIdx.x), 1);
}
__global__ void missing_barrier_k(int* out) {
    __shared__ int v;
    if (threadIdx.x == 0) v = static_cast<int>(blockIdx.x) + 7;
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;  // no __syncthreads() between the write and the reads
}
__global__ void index_k(unsigned* out) {
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    out[b * blockDim.x * blockDim.y * blockDim.z + t] = b * 1000 + t;
}
}  // namespace

TEST_CASE("simt: the emulator runs CUDA's execution model and reports broken kernels") {
    Emulated launch;
    // block reductions with warp shuffles and barriers: exact integer sums, 1024 threads a block
    std::vector<int> x(3 * 1024), sums(3);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<int>(i % 97) - 40;
    both_orders([&] {
        launch(block_sum_k, 3, 1024, x.data(), sums.data());
        return sums;
    });
    for (int b = 0; b < 3; ++b) {
        int want = 0;
        for (int i = 0; i < 1024; ++i) want += x[static_cast<size_t>(b * 1024 + i)];
        CHECK(sums[static_cast<size_t>(b)] == want);
    }
    // block and thread indices over three dimensions
    std::vector<unsigned> idx(2 * 3 * 2 * 4 * 2 * 3);
    launch(index_k, dim3(2, 3, 2), dim3(4, 2, 3), idx.data());
    for (unsigned b = 0; b < 12; ++b)
        for (unsigned t = 0; t < 24; ++t) REQUIRE(idx[b * 24 + t] == b * 1000 + t);

    std::vector<int> out(64);
    CHECK_THROWS_WITH_AS(launch(divergent_barrier_k, 1, 64, out.data()), doctest::Contains("deadlock"), simt::Error);
    const int n = 40;
    CHECK_THROWS_WITH_AS(launch(early_exit_barrier_k, 1, 64, &n, out.data()), doctest::Contains("24 exited"), simt::Error);
    std::vector<float> f(48);
    CHECK_THROWS_WITH_AS(launch(partial_warp_shuffle_k, 1, 48, f.data()), doctest::Contains("warp of 16 threads"), simt::Error);
    CHECK_THROWS_AS(launch(block_sum_k, dim3(1, 70000), 32, x.data(), sums.data()), simt::Error);
    CHECK_THROWS_AS(launch(block_sum_k, 1, 2048, x.data(), sums.data()), simt::Error);
    // after a failed launch the emulator runs the next one
    launch(block_sum_k, 1, 64, x.data(), sums.data());
    int want = 0;
    for (int i = 0; i < 64; ++i) want += x[static_cast<size_t>(i)];
    CHECK(sums[0] == want);

    // a read of shared memory without its barrier gives different results in the two orders
    std::vector<int> fwd(2 * 64, -1), rev(2 * 64, -1);
    auto& rt = simt::Runtime::get();
    launch(missing_barrier_k, 2, 64, fwd.data());
    rt.order = simt::Order::Reverse;
    launch(missing_barrier_k, 2, 64, rev.data());
    rt.order = simt::Order::Forward;
    CHECK(fwd != rev);
}

// ------------------------------------------------------------------ batch normalisation

TEST_CASE("simt: batch norm kernels (train, eval, residual, backward) match the CPU ops") {
    Emulated launch;
    using math::Activation;
    // each path of the plans: [N, C] and planes under 256 values (a flat pass; statistics blocks
    // share out the values of several planes), 256-value planes (a block each, sums within a
    // block), 2304-value planes (statistics walk cells), a single image's 9216-value planes cut
    // in 4 parts, three images' planes in 4 parts over 12 blocks
    for (const Shape& s : {Shape{16, 6}, Shape{3, 6, 3, 3}, Shape{4, 6, 5, 7}, Shape{5, 3, 16, 16}, Shape{2, 3, 48, 48},
                           Shape{1, 2, 96, 96}, Shape{3, 1, 96, 96}}) {
        for (Activation act : {Activation::Identity, Activation::ReLU, Activation::ReLU6}) {
            CAPTURE(s.str());
            CAPTURE(static_cast<int>(act));
            const int64_t c = s[1];
            Tensor x = rnd(s, 6, -2.0f, 5.0f), gamma = rnd(Shape{c}, 7, 0.5f, 2.0f), beta = rnd(Shape{c}, 8);
            Tensor rm = rnd(Shape{c}, 9), rv = rnd(Shape{c}, 10, 0.5f, 1.5f), dy = rnd(s, 11), res = rnd(s, 12);
            const kc::bn::Layout L{s[0], c, s.ndim() == 4 ? s[2] * s[3] : 1};
            const kc::bn::Plan plan = kc::bn::plan(L);
            const float momentum = 0.1f, eps = 1e-5f;

            // training forward
            Tensor crm = rm.clone(), crv = rv.clone();
            ops::BatchNormSaved saved;
            Tensor y = ops::batchnorm_forward_train(x, gamma, beta, crm, crv, momentum, eps, &saved, act);
            const Vec xv = vec(x), gv = vec(gamma), bv = vec(beta);
            const auto fwd = both_orders([&] {
                Vec erm = vec(rm), erv = vec(rv), mean(c), invstd(c), ey(xv.size()), coeff(plan.coeff_count());
                std::vector<double> part(plan.part_count());
                kc::bn::forward_train(launch, plan, xv.data(), gv.data(), bv.data(), erm.data(), erv.data(), momentum, eps,
                                      mean.data(), invstd.data(), ey.data(), act, part.data(), coeff.data());
                return std::vector<Vec>{ey, mean, invstd, erm, erv};
            });
            FSAD_CHECK_CLOSE("train y", fwd[0], vec(y), kAtol, kRtol);
            FSAD_CHECK_CLOSE("train mean", fwd[1], vec(saved.mean), kAtol, kRtol);
            FSAD_CHECK_CLOSE("train invstd", fwd[2], vec(saved.invstd), kAtol, kRtol);
            FSAD_CHECK_CLOSE("running mean", fwd[3], vec(crm), kAtol, kRtol);
            FSAD_CHECK_CLOSE("running var", fwd[4], vec(crv), kAtol, kRtol);

            // training backward (dx, dgamma, dbeta; then dx alone)
            Tensor dx, dgamma, dbeta;
            ops::batchnorm_backward_train(x, gamma, saved, dy, &dx, &dgamma, &dbeta, &y, act);
            const Vec yv = vec(y), dyv = vec(dy), mv = vec(saved.mean), iv = vec(saved.invstd);
            const float* yp = act == Activation::Identity ? nullptr : yv.data();
            const auto bwd = both_orders([&] {
                Vec edx(xv.size()), edg(c), edb(c), sums(plan.coeff_count()), dx_only(xv.size());
                std::vector<double> part(plan.part_count());
                kc::bn::backward(launch, plan, xv.data(), gv.data(), mv.data(), iv.data(), true, dyv.data(), yp, act, edx.data(),
                                 edg.data(), edb.data(), part.data(), sums.data());
                kc::bn::backward(launch, plan, xv.data(), gv.data(), mv.data(), iv.data(), true, dyv.data(), yp, act,
                                 dx_only.data(), nullptr, nullptr, part.data(), sums.data());
                return std::vector<Vec>{edx, edg, edb, dx_only};
            });
            FSAD_CHECK_CLOSE("train dx", bwd[0], vec(dx), 1e-4, 1e-4);
            FSAD_CHECK_CLOSE("train dgamma", bwd[1], vec(dgamma), 1e-4, 1e-5);
            FSAD_CHECK_CLOSE("train dbeta", bwd[2], vec(dbeta), 1e-4, 1e-5);
            CHECK(bwd[3] == bwd[0]);

            // inference, alone and with a residual (the fused convolution's epilogue)
            Tensor ye = ops::batchnorm_forward_eval(x, gamma, beta, rm, rv, eps, act);
            Tensor yr = ops::batchnorm_forward_eval(x, gamma, beta, rm, rv, eps, Activation::Identity);
            Tensor yres = ops::activation_forward(ops::add(yr, res), act);
            const Vec rmv = vec(rm), rvv = vec(rv), resv = vec(res);
            const auto ev = both_orders([&] {
                Vec e1(xv.size()), e2(xv.size()), coeff(plan.coeff_count());
                kc::bn::forward_eval(launch, plan, xv.data(), gv.data(), bv.data(), rmv.data(), rvv.data(), eps, nullptr,
                                     e1.data(), act, coeff.data());
                kc::bn::forward_eval(launch, plan, xv.data(), gv.data(), bv.data(), rmv.data(), rvv.data(), eps, resv.data(),
                                     e2.data(), act, coeff.data());
                return std::vector<Vec>{e1, e2};
            });
            FSAD_CHECK_CLOSE("eval y", ev[0], vec(ye), kAtol, kRtol);
            FSAD_CHECK_CLOSE("eval y + residual", ev[1], vec(yres), kAtol, kRtol);

            // inference backward (no batch statistics; invstd from the running variance on the device)
            Tensor edx, edg, edb;
            ops::batchnorm_backward_eval(x, gamma, rm, rv, eps, dy, &edx, &edg, &edb, &ye, act);
            Vec inv_rv(static_cast<size_t>(c));
            kc::bn::invstd(launch, rvv.data(), eps, c, inv_rv.data());
            for (int64_t k = 0; k < c; ++k)
                REQUIRE(inv_rv[static_cast<size_t>(k)] == 1.0f / std::sqrt(rvv[static_cast<size_t>(k)] + eps));
            const Vec yev = vec(ye);
            const float* yep = act == Activation::Identity ? nullptr : yev.data();
            const auto eb = both_orders([&] {
                Vec e_dx(xv.size()), e_dg(c), e_db(c), sums(plan.coeff_count());
                std::vector<double> part(plan.part_count());
                kc::bn::backward(launch, plan, xv.data(), gv.data(), rmv.data(), inv_rv.data(), false, dyv.data(), yep, act,
                                 e_dx.data(), e_dg.data(), e_db.data(), part.data(), sums.data());
                return std::vector<Vec>{e_dx, e_dg, e_db};
            });
            FSAD_CHECK_CLOSE("eval dx", eb[0], vec(edx), kAtol, kRtol);
            FSAD_CHECK_CLOSE("eval dgamma", eb[1], vec(edg), 1e-4, 1e-5);
            FSAD_CHECK_CLOSE("eval dbeta", eb[2], vec(edb), 1e-4, 1e-5);
        }
    }
}

TEST_CASE("simt: batch norm plans cover the paths they claim and stay in CUDA's grid") {
    // the shapes of the test above take the paths its comment names
    CHECK(kc::bn::plan({16, 6, 1}).pass.e.flat);
    CHECK_FALSE(kc::bn::plan({5, 3, 256}).pass.e.flat);
    CHECK(kc::bn::plan({1, 2, 96 * 96}).cells.parts == 4);
    const auto three = kc::bn::plan({3, 1, 96 * 96});
    CHECK(three.cells.parts == 4);
    CHECK(three.cells.splits == 12);
    // ResNet18 at 224 px, batch 64: the first BN has 64 channels of 112x112 planes
    const auto first = kc::bn::plan({64, 64, 112 * 112});
    CHECK(first.cells.splits * 64 >= 1024);
    CHECK(first.pass.blocks == 64u * 64u);
    // a channel count beyond the grid's second dimension is refused, not launched
    const kc::bn::Layout wide{2, 70000, 4};
    CHECK_THROWS_AS(kc::bn::plan(wide), Error);
}

// ------------------------------------------------------------------ pooling

TEST_CASE("simt: pooling kernels match the CPU ops, in 32- and 64-bit indexing") {
    Emulated launch;
    struct Case {
        Shape x;
        ops::Pool2dParams p;
    };
    // ResNet's stem pool (3x3, stride 2, pad 1), 2x2 stride 2 with odd sizes, an uneven window
    // with padding, and a window larger than the stride
    for (const Case& c : {Case{Shape{2, 3, 9, 11}, {3, 3, 2, 2, 1, 1}}, Case{Shape{1, 2, 7, 5}, {2, 2, 2, 2, 0, 0}},
                          Case{Shape{2, 2, 6, 8}, {2, 3, 1, 2, 1, 1}}, Case{Shape{1, 1, 10, 10}, {4, 4, 3, 3, 2, 0}}}) {
        CAPTURE(c.x.str());
        // coarse values: windows hold repeated maxima (the gradient goes to the first)
        Vec coarse = vec(rnd(c.x, 12, -3.0f, 3.0f));
        for (float& e : coarse) e = std::round(e);
        const Tensor x = Tensor::from_vector(c.x, coarse);
        Tensor y = ops::maxpool2d_forward(x, c.p), dy = rnd(y.shape(), 13);
        Tensor dx = ops::maxpool2d_backward(x, dy, c.p);
        Tensor ya = ops::avgpool2d_forward(x, c.p), dxa = ops::avgpool2d_backward(x.shape(), dy, c.p);
        const kc::pool::Geo g{c.x[0] * c.x[1], c.x[2], c.x[3], y.dim(2), y.dim(3),
                              c.p.kh, c.p.kw, c.p.stride_h, c.p.stride_w, c.p.pad_h, c.p.pad_w};
        const Vec xv = vec(x), dyv = vec(dy);
        const auto got = both_orders([&] {
            Vec my(y.numel()), mdx(x.numel()), ay(y.numel()), adx(x.numel());
            std::vector<int32_t> arg(static_cast<size_t>(y.numel())), arg64(arg.size());
            kc::pool::max_forward(launch, g, xv.data(), my.data());
            kc::pool::max_backward(launch, g, xv.data(), dyv.data(), mdx.data(), arg.data());
            kc::pool::avg_forward(launch, g, xv.data(), ay.data());
            kc::pool::avg_backward(launch, g, dyv.data(), adx.data());
            // the 64-bit instantiations (taken beyond 2^31 values) compute the same
            Vec my64(y.numel()), mdx64(x.numel());
            launch(kc::pool::maxpool_fwd_k<int64_t>, kc::blocks_for(y.numel()), kc::kThreads, xv.data(), my64.data(), g,
                   y.numel());
            launch(kc::pool::maxpool_argmax_k<int64_t>, kc::blocks_for(y.numel()), kc::kThreads, xv.data(), arg64.data(), g,
                   y.numel());
            CHECK(arg64 == arg);
            launch(kc::pool::maxpool_bwd_k<int64_t>, kc::blocks_for(x.numel()), kc::kThreads,
                   static_cast<const int32_t*>(arg64.data()), dyv.data(), mdx64.data(), g, x.numel());
            CHECK(my64 == my);
            CHECK(mdx64 == mdx);
            return std::vector<Vec>{my, mdx, ay, adx};
        });
        CHECK(got[0] == vec(y));
        CHECK(got[1] == vec(dx));
        FSAD_CHECK_CLOSE("avg y", got[2], vec(ya), kAtol, kRtol);
        FSAD_CHECK_CLOSE("avg dx", got[3], vec(dxa), kAtol, kRtol);
    }
    // global average pooling: a warp per plane; planes of 1, 31, 33 and 3000 values
    for (const Shape& s : {Shape{3, 5, 1, 1}, Shape{2, 4, 1, 31}, Shape{7, 9, 3, 11}, Shape{1, 3, 50, 60}}) {
        CAPTURE(s.str());
        Tensor x = rnd(s, 14), y = ops::global_avgpool_forward(x), dy = rnd(y.shape(), 15);
        Tensor dx = ops::global_avgpool_backward(s, dy);
        const Vec xv = vec(x), dyv = vec(dy);
        const int64_t nc = s[0] * s[1], hw = s[2] * s[3];
        const auto got = both_orders([&] {
            Vec ey(nc), edx(x.numel());
            kc::pool::global_avg_forward(launch, xv.data(), ey.data(), nc, hw);
            kc::pool::global_avg_backward(launch, dyv.data(), edx.data(), nc, hw);
            return std::vector<Vec>{ey, edx};
        });
        FSAD_CHECK_CLOSE("global avg y", got[0], vec(y), kAtol, kRtol);
        FSAD_CHECK_CLOSE("global avg dx", got[1], vec(dx), kAtol, kRtol);
    }
    // more planes than the warps of a capped grid: the warp-stride loop takes the rest
    const int64_t nc = 5, hw = 40;
    Vec x(nc * hw), y(nc, -1.0f);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % hw);
    launch(kc::pool::global_avg_fwd_k, 1, 64, static_cast<const float*>(x.data()), y.data(), nc, hw);  // 2 warps, 5 planes
    for (float v : y) CHECK(v == doctest::Approx(19.5));
}

// ------------------------------------------------------------------ the patch scorers' kernels

TEST_CASE("simt: the patch scorers' kernels (resize, layout, blur, row maximum, nearest row) match the CPU ops") {
    Emulated launch;
    const Tensor x = rnd(Shape{2, 3, 7, 5}, 30);
    const Vec xv = vec(x);
    const Tensor up = ops::resize_bilinear(x, 14, 11), down = ops::resize_bilinear(x, 3, 2);
    const Tensor last = ops::channels_last(x), blur = ops::gaussian_blur(x, 1.5);  // radius 6 > 5 columns
    const Tensor rows = rnd(Shape{9, 700}, 31);
    const Vec rv = vec(rows);
    const auto got = both_orders([&] {
        Vec u(up.numel()), d(down.numel()), l(last.numel()), b(blur.numel()), tmp(blur.numel()), m(9);
        kc::patch::resize_bilinear(launch, xv.data(), u.data(), 6, 7, 5, 14, 11);
        kc::patch::resize_bilinear(launch, xv.data(), d.data(), 6, 7, 5, 3, 2);
        kc::patch::channels_last(launch, xv.data(), l.data(), 2, 3, 35);
        const int64_t r = static_cast<int64_t>(4.0 * 1.5 + 0.5);
        std::vector<double> k(static_cast<size_t>(2 * r + 1));
        double sum = 0;
        for (int64_t j = -r; j <= r; ++j) sum += k[static_cast<size_t>(j + r)] = std::exp(-0.5 * double(j * j) / (1.5 * 1.5));
        for (double& v : k) v /= sum;
        kc::patch::gaussian_blur(launch, xv.data(), tmp.data(), b.data(), k.data(), r, 6, 7, 5);
        kc::patch::row_max(launch, rv.data(), m.data(), 9, 700);
        return std::vector<Vec>{u, d, l, b, m};
    });
    FSAD_CHECK_CLOSE("resize up", got[0], vec(up), 1e-6, 1e-6);  // the same taps (math::bilinear_tap)
    FSAD_CHECK_CLOSE("resize down", got[1], vec(down), 1e-6, 1e-6);
    CHECK(got[2] == vec(last));
    FSAD_CHECK_CLOSE("blur", got[3], vec(blur), 1e-6, 1e-6);
    CHECK(got[4] == vec(ops::row_max(rows)));
    // a NaN anywhere in a row makes its maximum NaN, as on the CPU
    Vec with_nan = rv;
    with_nan[3 * 700 + 650] = std::nanf("");
    Vec m(9);
    kc::patch::row_max(launch, with_nan.data(), m.data(), 9, 700);
    CHECK(std::isnan(m[3]));
    CHECK(std::isnan(vec(ops::row_max(Tensor::from_vector(rows.shape(), with_nan)))[3]));
    CHECK(m[4] == got[4][4]);

    // nearest bank row, the products done here: repeated bank rows make exact ties, which go to
    // the first (the CPU's scan); more bank rows than threads, and fewer
    for (int64_t M : {int64_t(600), int64_t(37)}) {
        CAPTURE(M);
        const int64_t P = 50, C = 8;
        Vec bank = vec(rnd(Shape{M, C}, 32));
        for (int64_t j = M / 2; j < M; ++j)
            std::copy_n(bank.begin() + (j - M / 2) * C, C, bank.begin() + j * C);  // the second half repeats the first
        const Tensor q = rnd(Shape{P, C}, 33), b = Tensor::from_vector(Shape{M, C}, bank);
        Vec sq(static_cast<size_t>(M)), g(static_cast<size_t>(P * M));
        for (int64_t j = 0; j < M; ++j) {
            double s = 0;
            for (int64_t c = 0; c < C; ++c) s += double(bank[j * C + c]) * bank[j * C + c];
            sq[j] = static_cast<float>(s);
        }
        const Vec qv = vec(q);
        for (int64_t i = 0; i < P; ++i)
            for (int64_t j = 0; j < M; ++j) {
                float s = 0;
                for (int64_t c = 0; c < C; ++c) s += qv[i * C + c] * bank[j * C + c];
                g[i * M + j] = s;
            }
        const Vec dist = both_orders([&] {
            Vec out(static_cast<size_t>(P));
            kc::patch::nearest(launch, g.data(), sq.data(), qv.data(), bank.data(), out.data(), P, M, C);
            return out;
        });
        FSAD_CHECK_CLOSE("nearest", dist, vec(ops::nearest_distance(q, b, Tensor::from_vector(Shape{M}, sq))), 1e-6, 1e-5);
    }
}

TEST_CASE("simt: the augmentation kernels (crop, rotate, colour with the contrast mean, blur, paste, normalise) match the CPU ops") {
    Emulated launch;
    // six images of two sizes (more values than a block has threads, and fewer): each colour
    // transform once; crops of the first two, rotations, blurs of all; a CutPaste and a scar
    using ops::PackedImage;
    std::vector<std::pair<int64_t, int64_t>> sizes = {{13, 17}, {5, 4}, {13, 17}, {5, 4}, {13, 17}, {5, 4}};
    int64_t total = 0;
    const std::vector<PackedImage> im = ops::pack_images(sizes, &total);
    const Tensor x = rnd(Shape{total}, 60, 0.0f, 1.0f);
    const Vec xv = vec(x);
    const std::vector<ops::CropJob> crops = {{.image = 0, .y0 = 1.5, .x0 = 0.25, .h = 10, .w = 12.5, .out_h = 7, .out_w = 6},
                                             {.image = 1, .y0 = 0, .x0 = 1, .h = 5, .w = 3, .out_h = 9, .out_w = 8, .hflip = true, .vflip = true}};
    const std::vector<PackedImage> crop_out = ops::pack_images({{7, 6}, {9, 8}});
    const std::vector<float> degrees = {17, -40, 0, 90, 5, -3};
    std::vector<math::RotateMap> maps;
    for (size_t i = 0; i < im.size(); ++i) maps.push_back(math::rotate_map(im[i].h, im[i].w, degrees[i]));
    const std::vector<ops::ColourOp> colours = {{math::Colour::Brightness, 1.3f}, {math::Colour::Contrast, 0.7f},
                                                {math::Colour::Saturation, 1.6f}, {math::Colour::Hue, -0.2f},
                                                {math::Colour::Contrast, 1.4f}, {math::Colour::Grayscale, 0}};
    std::vector<std::vector<float>> taps = {imgproc::gaussian_taps(2.0f), {}, imgproc::gaussian_taps(0.6f), {}, {}, imgproc::gaussian_taps(1.0f)};
    std::vector<float> flat;
    std::vector<int64_t> starts{0};
    for (const auto& t : taps) {
        flat.insert(flat.end(), t.begin(), t.end());
        starts.push_back(static_cast<int64_t>(flat.size()));
    }
    const std::vector<PackedImage> patches = {{0, 5, 7}, {3 * 35, 9, 3}};
    const Tensor pv_t = rnd(Shape{3 * (35 + 27)}, 61, 0.0f, 1.0f);
    const Vec pv = vec(pv_t);
    std::vector<ops::PasteJob> jobs(6);
    jobs[0].patch = 0, jobs[0].canvas_h = 5, jobs[0].canvas_w = 7, jobs[0].dy = 10, jobs[0].dx = -2;
    jobs[2].patch = 1, jobs[2].canvas_h = jobs[2].canvas_w = 12, jobs[2].oy = 1, jobs[2].ox = 4, jobs[2].rotate = true;
    jobs[2].degrees = 31, jobs[2].dy = 3, jobs[2].dx = -3;
    std::vector<math::RotateMap> paste_maps;
    for (const auto& j : jobs) paste_maps.push_back(math::rotate_map(j.canvas_h, j.canvas_w, j.degrees));
    const auto got = both_orders([&] {
        Vec c(static_cast<size_t>(3 * (42 + 72))), r(xv.size()), k(xv.size()), b(xv.size()), tmp(xv.size()), p = xv, n(xv.size());
        std::vector<double> mean(6);
        kc::augment::crop(launch, xv.data(), im.data(), crops.data(), crop_out.data(), c.data(), 2, 3 * 72);
        kc::augment::rotate(launch, xv.data(), im.data(), maps.data(), r.data(), 6, 3 * 13 * 17);
        kc::augment::colour(launch, xv.data(), im.data(), colours.data(), mean.data(), k.data(), 6, 3 * 13 * 17, true);
        kc::augment::blur(launch, xv.data(), im.data(), flat.data(), starts.data(), tmp.data(), b.data(), 6, 3 * 13 * 17);
        kc::augment::paste(launch, p.data(), im.data(), pv.data(), patches.data(), jobs.data(), paste_maps.data(), 6, 3 * 144);
        kc::augment::normalize(launch, xv.data(), n.data(), static_cast<int64_t>(xv.size()) / (3 * 13 * 17), 13 * 17);
        return std::vector<Vec>{c, r, k, b, p, n};
    });
    // the same arithmetic (detail/math.hpp), but the library may be built with -march=native and
    // contract products into FMAs where this test is not: agreement to rounding
    FSAD_CHECK_CLOSE("crop", got[0], vec(ops::crop_resize_images(x, im, crops)), 1e-6, 1e-6);
    FSAD_CHECK_CLOSE("rotate", got[1], vec(ops::rotate_images(x, im, degrees)), 1e-6, 1e-6);
    FSAD_CHECK_CLOSE("colour", got[2], vec(ops::colour_images(x, im, colours)), 1e-6, 1e-6);
    FSAD_CHECK_CLOSE("blur", got[3], vec(ops::blur_images(x, im, taps)), 1e-6, 1e-6);
    Tensor pasted = x.clone();
    ops::paste_images(pasted, im, pv_t, patches, jobs);
    FSAD_CHECK_CLOSE("paste", got[4], vec(pasted), 1e-6, 1e-6);
    int64_t moved = 0;  // (something was pasted)
    for (size_t i = 0; i < xv.size(); ++i) moved += got[4][i] != xv[i];
    CHECK(moved > 20);
    // normalise as a batch of [3,13,17] images: 3 x 221 + 3 x 20 values do not divide evenly, so
    // compare the whole planes it covers
    const int64_t planes = static_cast<int64_t>(xv.size()) / (3 * 13 * 17);
    const Vec ref = vec(ops::imagenet_normalize(x.slice(0, planes * 3 * 13 * 17).reshape(Shape{planes, 3, 13, 17})));
    FSAD_CHECK_CLOSE("normalise", Vec(got[5].begin(), got[5].begin() + static_cast<long>(ref.size())), ref, 1e-6, 1e-6);
}

// ------------------------------------------------------------------ element-wise, row-wise, reductions

TEST_CASE("simt: element-wise, row-wise and reduction kernels match the CPU ops") {
    Emulated launch;
    using math::Activation;
    const int64_t n = 5003;  // not a multiple of a block
    Tensor a = rnd(Shape{n}, 16, -8.0f, 8.0f), b = rnd(Shape{n}, 17);
    const Vec av = vec(a), bv = vec(b);
    const auto got = both_orders([&] {
        std::vector<Vec> r;
        Vec y(n);
        kc::ew::fill(launch, y.data(), n, 2.5f);
        r.push_back(y);
        for (Activation act : {Activation::ReLU, Activation::ReLU6, Activation::Identity}) {
            kc::ew::activation(launch, av.data(), y.data(), n, act);
            r.push_back(y);
            kc::ew::activation_grad(launch, av.data(), bv.data(), y.data(), n, act);
            r.push_back(y);
        }
        kc::ew::axpby(launch, 0.5f, av.data(), -2.0f, bv.data(), y.data(), n);
        r.push_back(y);
        kc::ew::mul(launch, av.data(), bv.data(), y.data(), n);
        r.push_back(y);
        kc::ew::affine(launch, av.data(), 3.0f, -1.0f, y.data(), n);
        r.push_back(y);
        return r;
    });
    size_t k = 0;
    CHECK(got[k++] == Vec(n, 2.5f));
    for (Activation act : {Activation::ReLU, Activation::ReLU6, Activation::Identity}) {
        CHECK(got[k++] == vec(ops::activation_forward(a, act)));
        CHECK(got[k++] == vec(ops::activation_backward(a, b, act)));
    }
    FSAD_CHECK_CLOSE("axpby", got[k++], vec(ops::axpby(0.5f, a, -2.0f, b)), kAtol, kRtol);
    FSAD_CHECK_CLOSE("mul", got[k++], vec(ops::mul(a, b)), kAtol, kRtol);
    FSAD_CHECK_CLOSE("affine", got[k++], vec(ops::affine(a, 3.0f, -1.0f)), kAtol, kRtol);

    // bfloat16: rounding in place and through the 16-bit operands of the BF16 convolutions agree
    // bit for bit with the CPU op (values over many binades, so every exponent range is rounded)
    Tensor wide = rnd(Shape{n}, 18, -1.0f, 1.0f);
    Vec wv = vec(wide);
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = std::ldexp(wv[i], static_cast<int>(i % 200) - 100);
    wide = Tensor::from_vector(Shape{n}, wv);
    const Vec want = vec(ops::round_bf16(wide));
    const auto bf = both_orders([&] {
        Vec rounded(n), widened(n);
        std::vector<uint16_t> bits(static_cast<size_t>(n));
        kc::ew::round_bf16(launch, wv.data(), rounded.data(), n);
        kc::ew::to_bf16(launch, wv.data(), bits.data(), n);
        kc::ew::from_bf16(launch, static_cast<const uint16_t*>(bits.data()), widened.data(), n);
        return std::vector<Vec>{rounded, widened};
    });
    CHECK(bf[0] == want);
    CHECK(bf[1] == want);
    size_t changed = 0;  // the rounding did something (a bfloat16 keeps 8 of float32's 24 bits)
    for (size_t i = 0; i < wv.size(); ++i) changed += want[i] != wv[i];
    CHECK(changed > wv.size() / 2);

    // Adam and EMA over a flat buffer
    Tensor p = rnd(Shape{n}, 40), g = rnd(Shape{n}, 41), m = rnd(Shape{n}, 42, 0.0f, 0.1f), v = rnd(Shape{n}, 43, 0.0f, 0.1f);
    const math::AdamStep st{1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 1.0f - 0.9f * 0.9f, std::sqrt(1.0f - 0.999f * 0.999f)};
    const Vec p0 = vec(p), g0 = vec(g), m0 = vec(m), v0 = vec(v);
    ops::adam_step(p, g, m, v, st);
    Tensor t = rnd(Shape{n}, 44);
    const Vec t0 = vec(t);
    ops::ema_update(t, p, 0.99f);
    const auto opt = both_orders([&] {
        Vec ep = p0, em = m0, ev = v0, et = t0;
        kc::ew::adam(launch, ep.data(), g0.data(), em.data(), ev.data(), n, st);
        kc::ew::ema(launch, et.data(), static_cast<const float*>(ep.data()), n, 0.99f);
        return std::vector<Vec>{ep, em, ev, et};
    });
    FSAD_CHECK_CLOSE("adam p", opt[0], vec(p), 1e-6, 1e-6);
    FSAD_CHECK_CLOSE("adam m", opt[1], vec(m), 1e-7, 1e-6);
    FSAD_CHECK_CLOSE("adam v", opt[2], vec(v), 1e-7, 1e-6);
    FSAD_CHECK_CLOSE("ema", opt[3], vec(t), 1e-6, 1e-6);

    // bias, sums over a dimension and over everything (two-stage: 1024 partial blocks at most,
    // grid-stride beyond)
    Tensor x = rnd(Shape{7, 13}, 20), bias = rnd(Shape{13}, 22), q = rnd(Shape{3, 4, 5}, 24), dq = rnd(Shape{3, 5}, 26);
    Tensor big = rnd(Shape{300007}, 31);
    const Vec xv = vec(x), biasv = vec(bias), qv = vec(q), dqv = vec(dq), bigv = vec(big);
    const auto red = both_orders([&] {
        Vec xb = xv, s1(15), ds1(60), total(1), total_big(1);
        kc::ew::add_bias(launch, xb.data(), biasv.data(), 7, 13);
        kc::ew::sum_dim(launch, qv.data(), s1.data(), 3, 4, 5);
        kc::ew::sum_dim_backward(launch, dqv.data(), ds1.data(), 3, 4, 5);
        std::vector<double> partial(static_cast<size_t>(kc::ew::sum_all_blocks(60)));
        kc::ew::sum_all(launch, qv.data(), 60, total.data(), partial.data());
        partial.assign(static_cast<size_t>(kc::ew::sum_all_blocks(300007)), 0.0);
        kc::ew::sum_all(launch, bigv.data(), 300007, total_big.data(), partial.data());
        return std::vector<Vec>{xb, s1, ds1, total, total_big};
    });
    CHECK(kc::ew::sum_all_blocks(300007) == 1024);
    const Tensor bias_rows = ops::concat(std::vector<Tensor>(7, bias.reshape(Shape{1, 13})), 0);
    FSAD_CHECK_CLOSE("add bias", red[0], vec(ops::add(x, bias_rows)), kAtol, kRtol);
    FSAD_CHECK_CLOSE("sum_dim", red[1], vec(ops::sum_dim(q, 1)), kAtol, kRtol);
    FSAD_CHECK_CLOSE("sum_dim backward", red[2], vec(ops::sum_dim_backward(q.shape(), dq, 1)), kAtol, kRtol);
    FSAD_CHECK_CLOSE("sum_all", red[3], vec(ops::sum_all(q)), kAtol, kRtol);
    FSAD_CHECK_CLOSE("sum_all, 300007 values", red[4], vec(ops::sum_all(big)), 1e-3, 1e-6);

    // rows: gather (repeated indices), scatter-add (atomics: the order changes the rounding, so
    // compared with a tolerance in each order), L2-normalise, cosine similarity (rows of 300:
    // more than a block; a zero row takes the eps branch)
    Tensor r = rnd(Shape{6, 300}, 27), s = rnd(Shape{6, 300}, 28), dr = rnd(Shape{6, 300}, 29), dc = rnd(Shape{6}, 30);
    {
        Vec rz = vec(r);
        std::fill(rz.begin() + 600, rz.begin() + 900, 0.0f);  // row 2
        r = Tensor::from_vector(r.shape(), rz);
    }
    const std::vector<int64_t> index{4, 1, 1, 5, 0, 1};
    const Vec rv = vec(r), sv = vec(s), drv = vec(dr), dcv = vec(dc);
    const float eps = 1e-8f;
    const auto rows = both_orders([&] {
        Vec gathered(rv.size()), l2(rv.size()), l2b(rv.size()), cos(6), da(rv.size()), db(rv.size()), da_only(rv.size());
        kc::ew::gather_rows(launch, rv.data(), index.data(), gathered.data(), 6, 300);
        kc::ew::l2_normalize(launch, rv.data(), l2.data(), 6, 300, eps);
        kc::ew::l2_normalize_backward(launch, rv.data(), drv.data(), l2b.data(), 6, 300, eps);
        kc::ew::cosine(launch, rv.data(), sv.data(), cos.data(), 6, 300, eps);
        kc::ew::cosine_backward(launch, rv.data(), sv.data(), dcv.data(), da.data(), db.data(), 6, 300, eps);
        kc::ew::cosine_backward(launch, rv.data(), sv.data(), dcv.data(), da_only.data(), static_cast<float*>(nullptr), 6, 300,
                                eps);
        return std::vector<Vec>{gathered, l2, l2b, cos, da, db, da_only};
    });
    Tensor cda, cdb;
    ops::cosine_similarity_backward(r, s, dc, eps, &cda, &cdb);
    CHECK(rows[0] == vec(ops::gather_rows(r, index)));
    FSAD_CHECK_CLOSE("l2 normalise", rows[1], vec(ops::l2_normalize_forward(r, eps)), kAtol, kRtol);
    FSAD_CHECK_CLOSE("l2 normalise backward", rows[2], vec(ops::l2_normalize_backward(r, dr, eps)), 1e-4, kRtol);
    FSAD_CHECK_CLOSE("cosine", rows[3], vec(ops::cosine_similarity_forward(r, s, eps)), kAtol, kRtol);
    FSAD_CHECK_CLOSE("cosine da", rows[4], vec(cda), kAtol, kRtol);
    FSAD_CHECK_CLOSE("cosine db", rows[5], vec(cdb), kAtol, kRtol);
    CHECK(rows[6] == rows[4]);
    const Vec want_scatter = vec(ops::gather_rows_backward(dr, index, 6));
    for (simt::Order order : {simt::Order::Forward, simt::Order::Reverse}) {
        simt::Runtime::get().order = order;
        Vec scattered(rv.size(), 0.0f);
        kc::ew::scatter_add_rows(launch, drv.data(), index.data(), scattered.data(), 6, 300);
        FSAD_CHECK_CLOSE("scatter-add rows", scattered, want_scatter, 1e-6, 1e-6);
    }
    simt::Runtime::get().order = simt::Order::Forward;
}

// ------------------------------------------------------------------ the Gaussian density's stages

TEST_CASE("simt: the density kernels, with the library calls done on the CPU, give the CPU density") {
    Emulated launch;
    const int64_t n = 40, d = 24, m = 9;
    Tensor f = rnd(Shape{n, d}, 100, -1.0f, 2.0f), q = rnd(Shape{m, d}, 200, -1.0f, 2.0f);
    method::GaussianDensity cpu;
    cpu.fit(f);  // Ledoit-Wolf, L2-normalised features
    const Vec fv = vec(f), qv = vec(q);
    const auto fit = both_orders([&] {
        std::vector<double> x(static_cast<size_t>(n * d)), mu(static_cast<size_t>(d)), S(static_cast<size_t>(d * d), 0.0),
            acc(3, -1.0);
        int bad = INT_MAX;
        kc::density::rows_to_double(launch, fv.data(), x.data(), n, d, true, &bad);
        CHECK(bad == INT_MAX);
        kc::density::centre(launch, x.data(), mu.data(), n, d);
        // cuBLAS Dsyrk's part: the lower triangle of the column-major S = Xc^T Xc / n
        for (int64_t j = 0; j < d; ++j)
            for (int64_t i = j; i < d; ++i) {
                double v = 0;
                for (int64_t r = 0; r < n; ++r) v += x[static_cast<size_t>(r * d + i)] * x[static_cast<size_t>(r * d + j)];
                S[static_cast<size_t>(i + j * d)] = v / static_cast<double>(n);
            }
        std::vector<double> scratch(kc::density::moments_scratch(n, d));
        kc::density::moments(launch, S.data(), x.data(), n, d, acc.data(), scratch.data());
        const double s = math::ledoit_wolf_from_moments(acc[0], acc[1], acc[2], n, d);
        const std::vector<double> before = S;
        kc::density::shrink(launch, S.data(), d, 1.0 - s, s * acc[0] / static_cast<double>(d));
        for (int64_t j = 0; j < d; ++j)
            for (int64_t i = j; i < d; ++i) {
                const double want = before[static_cast<size_t>(i + j * d)] * (1.0 - s) + (i == j ? s * acc[0] / static_cast<double>(d) : 0.0);
                REQUIRE(S[static_cast<size_t>(i + j * d)] == doctest::Approx(want).epsilon(1e-12));
            }
        return std::make_pair(mu, s);
    });
    CHECK(fit.second == doctest::Approx(cpu.shrinkage()).epsilon(1e-9));
    const Vec cpu_mu = vec(cpu.mean());
    for (int64_t k = 0; k < d; ++k) CHECK(fit.first[static_cast<size_t>(k)] == doctest::Approx(cpu_mu[static_cast<size_t>(k)]).epsilon(1e-6));

    // scoring: z = normalise(q) - mu; cuBLAS Strsm's part: solve L y = z; the norms of y
    const Vec Lv = vec(cpu.cholesky());
    const auto scores = both_orders([&] {
        Vec z(static_cast<size_t>(m * d)), out(static_cast<size_t>(m));
        int bad = INT_MAX;
        kc::density::centre_rows(launch, qv.data(), cpu_mu.data(), z.data(), m, d, true, &bad);
        CHECK(bad == INT_MAX);
        for (int64_t r = 0; r < m; ++r)
            for (int64_t i = 0; i < d; ++i) {
                double v = z[static_cast<size_t>(r * d + i)];
                for (int64_t j = 0; j < i; ++j) v -= Lv[static_cast<size_t>(i * d + j)] * z[static_cast<size_t>(r * d + j)];
                z[static_cast<size_t>(r * d + i)] = static_cast<float>(v / Lv[static_cast<size_t>(i * d + i)]);
            }
        kc::density::row_norms(launch, z.data(), out.data(), m, d);
        return out;
    });
    FSAD_CHECK_CLOSE("Mahalanobis distances", scores, vec(cpu.score(q)), 1e-4, 1e-4);

    // a non-finite feature names its first row; the others leave the marker alone
    Vec broken = qv;
    broken[static_cast<size_t>(5 * d + 3)] = std::nanf("");
    broken[static_cast<size_t>(7 * d)] = INFINITY;
    for (simt::Order order : {simt::Order::Forward, simt::Order::Reverse}) {
        simt::Runtime::get().order = order;
        Vec z(static_cast<size_t>(m * d));
        std::vector<double> x(static_cast<size_t>(m * d));
        int bad = INT_MAX, bad2 = INT_MAX;
        kc::density::centre_rows(launch, broken.data(), cpu_mu.data(), z.data(), m, d, true, &bad);
        kc::density::rows_to_double(launch, broken.data(), x.data(), m, d, false, &bad2);
        CHECK(bad == 5);
        CHECK(bad2 == 5);
    }
    simt::Runtime::get().order = simt::Order::Forward;
}
