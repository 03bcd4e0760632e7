#include "helpers.hpp"

using namespace fsad;

TEST_CASE("autograd: a value used twice accumulates both contributions") {
    Var x(Tensor::from_vector(Shape{2}, {1, 2}), true);
    Var y = ag::add(ag::affine(x, 3.0f), ag::mul(x, x));  // 3x + x^2 -> 3 + 2x
    ag::sum(y).backward();
    CHECK(x.grad().to_vector() == std::vector<float>{5, 7});
}

TEST_CASE("autograd: the first gradient is shared, later ones never modify it in place") {
    Var x(Tensor::from_vector(Shape{2}, {1, 2}), true);
    Var a = ag::affine(x, 1.0f);
    Var y = ag::add(a, a);  // the add closure hands the same tensor to both inputs
    ag::sum(y).backward();
    CHECK(x.grad().to_vector() == std::vector<float>{2, 2});
}

TEST_CASE("autograd: bound gradient buffers accumulate across backward passes") {
    Tensor buf = Tensor::zeros(Shape{2});
    Var w(Tensor::from_vector(Shape{2}, {1, 1}), true);
    w.bind_grad(buf);
    for (int i = 0; i < 3; ++i) ag::sum(ag::affine(w, 2.0f)).backward();
    CHECK(buf.to_vector() == std::vector<float>{6, 6});
}

TEST_CASE("autograd: no-grad scope and detach record nothing") {
    Var x(Tensor::from_vector(Shape{1}, {2}), true);
    {
        NoGradGuard ng;
        Var y = ag::affine(x, 2.0f);
        CHECK_FALSE(y.requires_grad());
    }
    Var z = ag::mul(x.detach(), x);
    ag::sum(z).backward();
    CHECK(x.grad().to_vector() == std::vector<float>{2});  // only the non-detached factor
    CHECK(grad_enabled());
}

TEST_CASE("autograd: backward errors") {
    Var c(Tensor::from_vector(Shape{2}, {1, 2}), false);
    CHECK_THROWS_WITH_AS(ag::sum(c).backward(), doctest::Contains("does not require grad"), Error);
    Var x(Tensor::from_vector(Shape{2}, {1, 2}), true);
    CHECK_THROWS_WITH_AS(ag::affine(x, 2.0f).backward(), doctest::Contains("needs an explicit seed"), Error);
}

TEST_CASE("autograd: deep chains do not overflow the stack") {
    Var x(Tensor::from_vector(Shape{1}, {1}), true);
    Var h = x;
    for (int i = 0; i < 20000; ++i) h = ag::affine(h, 1.0f, 0.0f);
    ag::sum(h).backward();
    CHECK(x.grad().item() == doctest::Approx(1.0));
}
