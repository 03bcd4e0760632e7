// Finite-difference gradient checks of every differentiable case of the op table
// (tests/op_cases.cpp), and the checks around gradients that a case cannot express.
#include "helpers.hpp"
#include "op_cases.hpp"

using namespace fsad;
using fsad::test::gradcheck;

TEST_CASE("gradcheck: every differentiable case of the op table") {
    int checked = 0;
    for (const test::OpCase& c : test::op_cases()) {
        if (!c.differentiable() || !c.gradcheck) continue;
        CAPTURE(c.name());
        gradcheck(c.name(), c.run, c.inputs, c.grad, c.grad_tol.h, c.grad_tol.atol, c.grad_tol.rtol);
        ++checked;
    }
    MESSAGE(checked << " cases checked");
    CHECK(checked > 0);
}

TEST_CASE("batchnorm with a fused activation equals batchnorm, then the activation") {
    Shape s{4, 3, 3, 2};
    Tensor x = test::randn(s, 16), g = test::randu(Shape{3}, 17, 2.0f, 6.0f), b = test::randn(Shape{3}, 18, 0.3f);
    for (auto act : {math::Activation::ReLU, math::Activation::ReLU6}) {
        NoGradGuard ng;
        Tensor rm = Tensor::zeros(Shape{3}), rv = Tensor::full(Shape{3}, 1.0f);
        Tensor rm2 = Tensor::zeros(Shape{3}), rv2 = Tensor::full(Shape{3}, 1.0f);
        Tensor fused = ops::batchnorm_forward_train(x, g, b, rm, rv, 0.1f, 1e-5f, nullptr, act);
        Tensor plain = ops::activation_forward(ops::batchnorm_forward_train(x, g, b, rm2, rv2, 0.1f, 1e-5f, nullptr), act);
        CHECK(fused.to_vector() == plain.to_vector());
    }
}
