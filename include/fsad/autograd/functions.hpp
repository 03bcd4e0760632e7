// Differentiable functions on Vars. Each records a closure that calls the matching *_backward
// of the op front end; the derivative rules themselves are written once, in the kernels
// (src/cpu/*.cpp headers state them). The table of which gradient goes where is
// src/autograd/functions.cpp, short enough to audit in a minute.
#pragma once
#include <vector>

#include "fsad/autograd/variable.hpp"
#include "fsad/core/ops.hpp"

namespace fsad::ag {

Var conv2d(const Var& x, const Var& w, const Var* bias, const ops::Conv2dParams& p);
/// Training-mode batch norm, then `act` fused; updates running_mean / running_var in place.
Var batchnorm_train(const Var& x, const Var& gamma, const Var& beta, const Tensor& running_mean,
                    const Tensor& running_var, float momentum, float eps,
                    math::Activation act = math::Activation::Identity);
/// Evaluation-mode batch norm (running statistics are constants), then `act` fused.
Var batchnorm_eval(const Var& x, const Var& gamma, const Var& beta, const Tensor& running_mean,
                   const Tensor& running_var, float eps, math::Activation act = math::Activation::Identity);
Var relu(const Var& x);
Var relu6(const Var& x);
Var activation(const Var& x, math::Activation a);
Var maxpool2d(const Var& x, const ops::Pool2dParams& p);
Var avgpool2d(const Var& x, const ops::Pool2dParams& p);
Var global_avgpool(const Var& x);
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
/// alpha*x + beta
Var affine(const Var& x, float alpha, float beta = 0.0f);
Var linear(const Var& x, const Var& w, const Var* bias);
Var concat(const std::vector<Var>& xs, int dim);
Var reshape(const Var& x, const Shape& s);
/// Rows [begin, end) along dim 0.
Var slice(const Var& x, int64_t begin, int64_t end);
Var gather_rows(const Var& x, const std::vector<int64_t>& index);
Var l2_normalize(const Var& x, float eps = 1e-12f);
Var cosine_similarity(const Var& a, const Var& b, float eps = 1e-8f);
Var sum(const Var& x);
Var mean(const Var& x);
Var sum_dim(const Var& x, int dim);

}  // namespace fsad::ag
