// The derivative table. For y = f(inputs), each closure reads dy = self.grad and hands
// dL/d(input) to input->accumulate_grad. Saved tensors are captured by value (shared storage).
#include "fsad/autograd/functions.hpp"

namespace fsad::ag {
using ops::Conv2dParams;
using ops::Pool2dParams;

namespace {
Node* in(Node& self, size_t i) { return self.inputs[i].get(); }
bool needs(Node& self, size_t i) { return i < self.inputs.size() && self.inputs[i] && self.inputs[i]->requires_grad; }
}  // namespace

Var conv2d(const Var& x, const Var& w, const Var* bias, const Conv2dParams& p) {
    Tensor xv = x.value(), wv = w.value();
    Tensor y = ops::conv2d_forward(xv, wv, bias ? &bias->value() : nullptr, p);
    std::vector<NodePtr> inputs{x.node(), w.node()};
    if (bias) inputs.push_back(bias->node());
    return make_result(std::move(y), "conv2d", std::move(inputs), [xv, wv, p](Node& s) {
        Tensor dx, dw, db;
        bool has_b = s.inputs.size() > 2;
        ops::conv2d_backward(xv, wv, s.grad, p, needs(s, 0) ? &dx : nullptr, needs(s, 1) ? &dw : nullptr,
                             has_b && needs(s, 2) ? &db : nullptr);
        if (dx.defined()) in(s, 0)->accumulate_grad(dx);
        if (dw.defined()) in(s, 1)->accumulate_grad(dw);
        if (db.defined()) in(s, 2)->accumulate_grad(db);
    });
}

Var batchnorm_train(const Var& x, const Var& gamma, const Var& beta, const Tensor& running_mean,
                    const Tensor& running_var, float momentum, float eps, math::Activation act) {
    auto saved = std::make_shared<ops::BatchNormSaved>();
    Tensor xv = x.value(), gv = gamma.value();
    Tensor y = ops::batchnorm_forward_train(xv, gv, beta.value(), running_mean, running_var, momentum, eps,
                                            saved.get(), act);
    Tensor yv = act == math::Activation::Identity ? Tensor() : y;
    return make_result(std::move(y), "batchnorm_train", {x.node(), gamma.node(), beta.node()},
                       [xv, gv, saved, yv, act](Node& s) {
                           Tensor dx, dg, db;
                           ops::batchnorm_backward_train(xv, gv, *saved, s.grad, needs(s, 0) ? &dx : nullptr,
                                                         needs(s, 1) ? &dg : nullptr, needs(s, 2) ? &db : nullptr,
                                                         yv.defined() ? &yv : nullptr, act);
                           if (dx.defined()) in(s, 0)->accumulate_grad(dx);
                           if (dg.defined()) in(s, 1)->accumulate_grad(dg);
                           if (db.defined()) in(s, 2)->accumulate_grad(db);
                       });
}

Var batchnorm_eval(const Var& x, const Var& gamma, const Var& beta, const Tensor& running_mean,
                   const Tensor& running_var, float eps, math::Activation act) {
    Tensor xv = x.value(), gv = gamma.value();
    Tensor y = ops::batchnorm_forward_eval(xv, gv, beta.value(), running_mean, running_var, eps, act);
    Tensor yv = act == math::Activation::Identity ? Tensor() : y;
    // Copies of the statistics (only when a gradient will be needed): the closure must see the
    // values the forward used.
    const bool record = grad_enabled() && (x.requires_grad() || gamma.requires_grad() || beta.requires_grad());
    Tensor rm = record ? running_mean.clone() : Tensor(), rv = record ? running_var.clone() : Tensor();
    return make_result(std::move(y), "batchnorm_eval", {x.node(), gamma.node(), beta.node()},
                       [xv, gv, rm, rv, eps, yv, act](Node& s) {
                           Tensor dx, dg, db;
                           ops::batchnorm_backward_eval(xv, gv, rm, rv, eps, s.grad, needs(s, 0) ? &dx : nullptr,
                                                        needs(s, 1) ? &dg : nullptr, needs(s, 2) ? &db : nullptr,
                                                        yv.defined() ? &yv : nullptr, act);
                           if (dx.defined()) in(s, 0)->accumulate_grad(dx);
                           if (dg.defined()) in(s, 1)->accumulate_grad(dg);
                           if (db.defined()) in(s, 2)->accumulate_grad(db);
                       });
}

Var activation(const Var& x, math::Activation a) {
    Tensor y = ops::activation_forward(x.value(), a);
    Tensor yv = y;
    return make_result(std::move(y), "activation", {x.node()},
                       [yv, a](Node& s) { in(s, 0)->accumulate_grad(ops::activation_backward(yv, s.grad, a)); });
}
Var relu(const Var& x) { return activation(x, math::Activation::ReLU); }
Var relu6(const Var& x) { return activation(x, math::Activation::ReLU6); }

Var maxpool2d(const Var& x, const Pool2dParams& p) {
    Tensor xv = x.value();
    return make_result(ops::maxpool2d_forward(xv, p), "maxpool2d", {x.node()},
                       [xv, p](Node& s) { in(s, 0)->accumulate_grad(ops::maxpool2d_backward(xv, s.grad, p)); });
}

Var avgpool2d(const Var& x, const Pool2dParams& p) {
    Shape xs = x.shape();
    return make_result(ops::avgpool2d_forward(x.value(), p), "avgpool2d", {x.node()},
                       [xs, p](Node& s) { in(s, 0)->accumulate_grad(ops::avgpool2d_backward(xs, s.grad, p)); });
}

Var global_avgpool(const Var& x) {
    Shape xs = x.shape();
    return make_result(ops::global_avgpool_forward(x.value()), "global_avgpool", {x.node()},
                       [xs](Node& s) { in(s, 0)->accumulate_grad(ops::global_avgpool_backward(xs, s.grad)); });
}

Var add(const Var& a, const Var& b) {
    return make_result(ops::add(a.value(), b.value()), "add", {a.node(), b.node()}, [](Node& s) {
        in(s, 0)->accumulate_grad(s.grad);
        in(s, 1)->accumulate_grad(s.grad);
    });
}

Var sub(const Var& a, const Var& b) {
    return make_result(ops::sub(a.value(), b.value()), "sub", {a.node(), b.node()}, [](Node& s) {
        in(s, 0)->accumulate_grad(s.grad);
        if (needs(s, 1)) in(s, 1)->accumulate_grad(ops::affine(s.grad, -1.0f, 0.0f));
    });
}

Var mul(const Var& a, const Var& b) {
    Tensor av = a.value(), bv = b.value();
    return make_result(ops::mul(av, bv), "mul", {a.node(), b.node()}, [av, bv](Node& s) {
        if (needs(s, 0)) in(s, 0)->accumulate_grad(ops::mul(s.grad, bv));
        if (needs(s, 1)) in(s, 1)->accumulate_grad(ops::mul(s.grad, av));
    });
}

Var affine(const Var& x, float alpha, float beta) {
    return make_result(ops::affine(x.value(), alpha, beta), "affine", {x.node()},
                       [alpha](Node& s) { in(s, 0)->accumulate_grad(ops::affine(s.grad, alpha, 0.0f)); });
}

Var linear(const Var& x, const Var& w, const Var* bias) {
    Tensor xv = x.value(), wv = w.value();
    std::vector<NodePtr> inputs{x.node(), w.node()};
    if (bias) inputs.push_back(bias->node());
    return make_result(ops::linear_forward(xv, wv, bias ? &bias->value() : nullptr), "linear", std::move(inputs),
                       [xv, wv](Node& s) {
                           Tensor dx, dw, db;
                           bool has_b = s.inputs.size() > 2;
                           ops::linear_backward(xv, wv, s.grad, needs(s, 0) ? &dx : nullptr,
                                                needs(s, 1) ? &dw : nullptr, has_b && needs(s, 2) ? &db : nullptr);
                           if (dx.defined()) in(s, 0)->accumulate_grad(dx);
                           if (dw.defined()) in(s, 1)->accumulate_grad(dw);
                           if (db.defined()) in(s, 2)->accumulate_grad(db);
                       });
}

Var concat(const std::vector<Var>& xs, int dim) {
    std::vector<Tensor> vals;
    std::vector<NodePtr> inputs;
    std::vector<int64_t> sizes;
    for (const Var& x : xs) {
        vals.push_back(x.value());
        inputs.push_back(x.node());
    }
    Tensor y = ops::concat(vals, dim);
    int d = dim < 0 ? dim + y.ndim() : dim;
    for (const Var& x : xs) sizes.push_back(x.shape()[d]);
    return make_result(std::move(y), "concat", std::move(inputs), [d, sizes](Node& s) {
        std::vector<Tensor> parts = ops::split(s.grad, d, sizes);
        for (size_t i = 0; i < parts.size(); ++i)
            if (needs(s, i)) in(s, i)->accumulate_grad(parts[i]);
    });
}

Var reshape(const Var& x, const Shape& sh) {
    Shape xs = x.shape();
    return make_result(x.value().reshape(sh), "reshape", {x.node()},
                       [xs](Node& s) { in(s, 0)->accumulate_grad(s.grad.reshape(xs)); });
}

Var slice(const Var& x, int64_t begin, int64_t end) {
    Tensor y = x.value().slice(begin, end);
    int64_t n = x.shape()[0];
    return make_result(std::move(y), "slice", {x.node()}, [begin, end, n](Node& s) {
        std::vector<int64_t> sizes{begin, end - begin, n - end};
        // the gradient is dy in rows [begin,end) and zero elsewhere
        Shape zs = s.grad.shape();
        zs[0] = begin;
        Shape ze = s.grad.shape();
        ze[0] = n - end;
        in(s, 0)->accumulate_grad(ops::concat(
            {Tensor::zeros(zs, s.grad.device()), s.grad, Tensor::zeros(ze, s.grad.device())}, 0));
    });
}

Var gather_rows(const Var& x, const std::vector<int64_t>& index) {
    int64_t n = x.shape()[0];
    return make_result(ops::gather_rows(x.value(), index), "gather_rows", {x.node()}, [index, n](Node& s) {
        in(s, 0)->accumulate_grad(ops::gather_rows_backward(s.grad, index, n));
    });
}

Var l2_normalize(const Var& x, float eps) {
    Tensor xv = x.value();
    return make_result(ops::l2_normalize_forward(xv, eps), "l2_normalize", {x.node()}, [xv, eps](Node& s) {
        in(s, 0)->accumulate_grad(ops::l2_normalize_backward(xv, s.grad, eps));
    });
}

Var cosine_similarity(const Var& a, const Var& b, float eps) {
    Tensor av = a.value(), bv = b.value();
    return make_result(ops::cosine_similarity_forward(av, bv, eps), "cosine_similarity", {a.node(), b.node()},
                       [av, bv, eps](Node& s) {
                           Tensor da, db;
                           ops::cosine_similarity_backward(av, bv, s.grad, eps, needs(s, 0) ? &da : nullptr,
                                                           needs(s, 1) ? &db : nullptr);
                           if (da.defined()) in(s, 0)->accumulate_grad(da);
                           if (db.defined()) in(s, 1)->accumulate_grad(db);
                       });
}

Var sum(const Var& x) {
    Shape xs = x.shape();
    // the gradient broadcast on the gradient's device (reading it back would stall a GPU)
    return make_result(ops::sum_all(x.value()), "sum", {x.node()}, [xs](Node& s) {
        in(s, 0)->accumulate_grad(ops::sum_dim_backward(Shape{1, xs.numel()}, s.grad, 1).reshape(xs));
    });
}

Var mean(const Var& x) {
    const float inv = 1.0f / static_cast<float>(x.value().numel() ? x.value().numel() : 1);
    return affine(sum(x), inv, 0.0f);
}

Var sum_dim(const Var& x, int dim) {
    Shape xs = x.shape();
    return make_result(ops::sum_dim(x.value(), dim), "sum_dim", {x.node()}, [xs, dim](Node& s) {
        in(s, 0)->accumulate_grad(ops::sum_dim_backward(xs, s.grad, dim));
    });
}

}  // namespace fsad::ag
