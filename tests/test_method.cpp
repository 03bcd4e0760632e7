// The method's building blocks against PyTorch / scikit-learn (tools/make_method_golden.py):
// the three losses and the fixed-centre loss with their gradients, the Ledoit-Wolf Gaussian and
// its Mahalanobis scores, AUROC with ties.
#include <thread>

#include "helpers.hpp"

using namespace fsad;

namespace {
const io::SafeTensors& fixture() {
    static io::SafeTensors fx = io::read_safetensors(test::data_dir() + "/golden_method.safetensors");
    return fx;
}
const Tensor& T(const std::string& k) { return fixture().tensors.at(k); }
}  // namespace

TEST_CASE("method: losses and gradients match PyTorch") {
    std::map<std::string, Var> v;
    for (const char* k : {"p1", "z2", "p2", "z1", "f1", "fh1", "fn", "f"}) v[k] = Var(T(std::string("loss.in.") + k).clone(), true);
    std::vector<int64_t> perm;
    for (float p : T("loss.perm").to_vector()) perm.push_back(static_cast<int64_t>(p));
    auto run = [&](const std::string& name, Var L) {
        for (auto& [k, x] : v) x.node()->grad = Tensor();
        L.backward();
        FSAD_CHECK_CLOSE("loss " + name, L.value().to_vector(), T("loss." + name + ".value").to_vector(), 1e-6, 1e-5);
        for (auto& [k, x] : v) {
            const std::string key = "loss." + name + ".grad." + k;
            const bool has = fixture().tensors.count(key) > 0;
            // stop-gradient inputs get no gradient in PyTorch and none here
            CHECK_MESSAGE(x.grad().defined() == has, name << ": gradient presence of " << k);
            if (has && x.grad().defined())
                FSAD_CHECK_CLOSE("d loss." + name + "/d" + k, x.grad().to_vector(), T(key).to_vector(), 1e-6, 1e-4);
        }
    };
    run("con", method::contrastive_loss(v["p1"], v["z2"], v["p2"], v["z1"]));
    run("pp", method::positive_pair_loss(v["f1"], v["fh1"], perm));
    run("np", method::negative_pair_loss(v["fh1"], v["fn"]));
    run("fc", method::fixed_centre_loss(v["f"], T("loss.in.centre")));
}

TEST_CASE("method: loss argument errors") {
    Var a(Tensor::zeros(Shape{4, 3}), true), b(Tensor::zeros(Shape{3, 3}), true);
    CHECK_THROWS_WITH_AS(method::negative_pair_loss(a, b), doctest::Contains("same shape"), Error);
    CHECK_THROWS_WITH_AS(method::positive_pair_loss(a, a, {0, 1, 1, 3}), doctest::Contains("not a permutation"), Error);
    CHECK_THROWS_WITH_AS(method::positive_pair_loss(a, a, {0, 1}), doctest::Contains("length 2"), Error);
}

TEST_CASE("method: Ledoit-Wolf Gaussian and Mahalanobis scores match scikit-learn and NumPy") {
    for (const char* key : {"density.n10_d64", "density.n50_d64", "density.n40_d512", "density.n10_d1"}) {
        const std::string k = key;
        method::GaussianDensity g;
        g.fit(T(k + ".X"), {method::Shrinkage::LedoitWolf, 0.0, false});
        INFO(k);
        CHECK(g.shrinkage() == doctest::Approx(T(k + ".shrinkage").item()).epsilon(1e-5));
        FSAD_CHECK_CLOSE(k + " mean", g.mean().to_vector(), T(k + ".mean").to_vector(), 1e-6, 1e-5);
        FSAD_CHECK_CLOSE(k + " scores", g.score(T(k + ".Y")).to_vector(), T(k + ".scores").to_vector(), 1e-5, 1e-5);
    }
}

TEST_CASE("method: the blocked, threaded covariance and Cholesky factor reproduce the shrunk covariance") {
    // d = 300 > one 128-wide block; n = 400 >= d/2 (full factor); 1-3 threads split the products
    const int64_t n = 400, d = 300;
    Rng rng(12);
    Tensor x = rng.normal_tensor(Shape{n, d}, 0.2f, 1);
    for (int64_t k = 0; k < d; ++k) x.data()[k * 7 % (n * d)] *= 3.0f;  // uneven variances
    // reference in double: L2-normalised rows, mean, S = Xc^T Xc / n, Sigma = (1-s) S + s tr(S)/d I
    std::vector<double> X(static_cast<size_t>(n * d)), mu(static_cast<size_t>(d), 0.0);
    for (int64_t i = 0; i < n; ++i) {
        double nrm = 0;
        for (int64_t k = 0; k < d; ++k) nrm += double(x.data()[i * d + k]) * x.data()[i * d + k];
        for (int64_t k = 0; k < d; ++k) X[size_t(i * d + k)] = x.data()[i * d + k] / std::sqrt(nrm);
        for (int64_t k = 0; k < d; ++k) mu[size_t(k)] += X[size_t(i * d + k)] / double(n);
    }
    std::vector<double> S(static_cast<size_t>(d * d), 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t a = 0; a < d; ++a)
            for (int64_t b = 0; b <= a; ++b)
                S[size_t(a * d + b)] += (X[size_t(i * d + a)] - mu[size_t(a)]) * (X[size_t(i * d + b)] - mu[size_t(b)]) / double(n);
    double tr = 0;
    for (int64_t a = 0; a < d; ++a) tr += S[size_t(a * d + a)];
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        method::GaussianDensity g;
        g.fit(x);
        const double s = g.shrinkage();
        CHECK(s > 0.0);
        CHECK(s < 1.0);
        const std::vector<float> L = g.cholesky().to_vector();
        double worst = 0, scale = 0;
        for (int64_t a = 0; a < d; ++a)
            for (int64_t b = 0; b <= a; ++b) {
                const double want = (1 - s) * S[size_t(a * d + b)] + (a == b ? s * tr / double(d) : 0.0);
                double got = 0;
                for (int64_t k = 0; k <= b; ++k) got += double(L[size_t(a * d + k)]) * L[size_t(b * d + k)];
                worst = std::max(worst, std::abs(got - want));
                scale = std::max(scale, std::abs(want));
            }
        INFO("threads " << threads << ": max |L L^T - Sigma| = " << worst << " of max |Sigma| = " << scale);
        CHECK(worst <= 1e-5 * scale);
        for (int64_t a = 0; a < d; ++a)
            for (int64_t b = a + 1; b < d; ++b) REQUIRE(L[size_t(a * d + b)] == 0.0f);
        const std::vector<float> sc = g.score(x).to_vector();
        if (first.empty()) first = sc;
        else FSAD_CHECK_CLOSE("scores, threads " + std::to_string(threads), sc, first, 1e-5, 1e-5);
    }
    set_num_threads(2);
}

TEST_CASE("method: the density handles one shot, the ridge option, and refuses bad input") {
    Rng rng(4);
    Tensor one = rng.normal_tensor(Shape{1, 32}, 0, 1);
    method::GaussianDensity g;
    // a single sample has zero covariance: Ledoit-Wolf cannot make it positive definite
    CHECK_THROWS_WITH_AS(g.fit(one), doctest::Contains("not positive definite"), Error);
    g.fit(one, {method::Shrinkage::Ridge, 0.01, true});
    CHECK(g.score(one).item() == doctest::Approx(0.0).epsilon(1e-6));
    // 10 augmented copies of one shot in 512 dimensions: shrinkage makes it well posed
    Tensor few = rng.normal_tensor(Shape{10, 512}, 0, 1);
    g.fit(few);
    auto s = g.score(rng.normal_tensor(Shape{3, 512}, 0, 1)).to_vector();
    for (float x : s) CHECK(std::isfinite(x));
    Tensor bad = Tensor::from_vector(Shape{2, 2}, {1, std::nanf(""), 0, 1});
    CHECK_THROWS_WITH_AS(g.fit(bad), doctest::Contains("non-finite"), Error);
    CHECK_THROWS_WITH_AS(g.score(Tensor::zeros(Shape{2, 3})), doctest::Contains("do not have dimension 512"), Error);
    Tensor bad_row = rng.normal_tensor(Shape{300, 512}, 0, 1);
    bad_row.data()[299 * 512 + 7] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(g.score(bad_row), doctest::Contains("feature row 299 has a non-finite value"), Error);
    // a restored density scores identically
    method::GaussianDensity r;
    r.set(g.mean(), g.cholesky(), g.options());
    Tensor q = rng.normal_tensor(Shape{4, 512}, 0, 1);
    FSAD_CHECK_CLOSE("restored", r.score(q).to_vector(), g.score(q).to_vector(), 1e-4, 1e-4);
}

TEST_CASE("method: the density's derived factors (inverse, device copies) follow refits and copies; first use from threads") {
    Rng rng(9);
    Tensor a = rng.normal_tensor(Shape{200, 64}, 0, 1), b = rng.normal_tensor(Shape{200, 64}, 0.5f, 2);
    Tensor q = rng.normal_tensor(Shape{50, 64}, 0, 1);
    method::GaussianDensity ga, gb;
    ga.fit(a);
    gb.fit(b);
    const std::vector<float> sa = ga.score(q).to_vector(), sb = gb.score(q).to_vector();
    method::GaussianDensity copy = ga;  // shares ga's derived factors
    CHECK(copy.score(q).to_vector() == sa);
    copy.fit(b);                         // a refit must not reuse ga's inverse factor
    CHECK(copy.score(q).to_vector() == sb);
    CHECK(ga.score(q).to_vector() == sa);
    // several threads scoring a fresh density at once: the inverse is made once, scores identical
    method::GaussianDensity fresh;
    fresh.set(ga.mean(), ga.cholesky(), ga.options());
    std::vector<std::vector<float>> got(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < got.size(); ++t) threads.emplace_back([&, t] { got[t] = fresh.score(q).to_vector(); });
    for (auto& t : threads) t.join();
    for (const auto& g : got) FSAD_CHECK_CLOSE("threads", g, sa, 1e-4, 1e-4);
    for (const auto& g : got) CHECK(g == got[0]);
}

TEST_CASE("eval: AUROC with ties matches scikit-learn; ROC curve endpoints") {
    std::vector<float> s = T("auroc.scores").to_vector();
    std::vector<int> y;
    for (float v : T("auroc.labels").to_vector()) y.push_back(static_cast<int>(v));
    CHECK(eval::auroc(s, y) == doctest::Approx(T("auroc.value").item()).epsilon(1e-6));  // fixture stores float32
    CHECK(eval::auroc({1, 2, 3, 4}, {0, 0, 1, 1}) == doctest::Approx(1.0));
    CHECK(eval::auroc({1, 1, 1, 1}, {0, 1, 0, 1}) == doctest::Approx(0.5));
    auto roc = eval::roc_curve(s, y);
    CHECK(roc.front().fpr == 0.0);
    CHECK(roc.back().fpr == doctest::Approx(1.0));
    CHECK(roc.back().tpr == doctest::Approx(1.0));
    CHECK_THROWS_WITH_AS(eval::auroc({1, 2}, {0, 0}), doctest::Contains("both normal and anomalous"), Error);
    CHECK_THROWS_WITH_AS(eval::auroc({1, 2}, {0, 2}), doctest::Contains("label 2"), Error);
}

#include "fsad/detail/py_random.hpp"

TEST_CASE("eval: PyRandom reproduces CPython's random (values printed by CPython 3.11)") {
    eval::PyRandom r0(0);
    CHECK(r0.getrandbits(32) == 3626764237u);
    CHECK(r0.getrandbits(32) == 1654615998u);
    CHECK(eval::PyRandom(0).sample(952, 5) == std::vector<int64_t>{864, 394, 776, 911, 430});
    CHECK(eval::PyRandom(1).sample(952, 5) == std::vector<int64_t>{137, 582, 867, 821, 782});
    CHECK(eval::PyRandom(2).sample(952, 5) == std::vector<int64_t>{883, 869, 57, 93, 86});
    auto ten = eval::PyRandom(1).sample(952, 10);
    CHECK(std::vector<int64_t>(ten.begin(), ten.begin() + 3) == std::vector<int64_t>{137, 582, 867});
}
