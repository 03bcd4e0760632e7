// The smallest honest autograd (after flashlight's Variable): a Var holds a value, a gradient,
// its inputs and a backward closure; backward() walks the graph in reverse topological order.
//
// Gradient accumulation rule (the only place gradients are summed):
//   Var::accumulate_grad(g):
//     - a leaf bound to a gradient buffer (parameters: a view into the model's flat gradient
//       buffer) always adds: grad += g. Module::zero_grad() clears the buffer before a step.
//     - otherwise the first contribution is stored as is (shared, not copied), and later ones
//       are summed into a fresh tensor the first time, in place after that.
// Backward closures compute the gradients of their inputs with '=' semantics (ops.hpp) and hand
// each one to accumulate_grad of that input.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fsad/core/tensor.hpp"

namespace fsad {

struct Node;
using NodePtr = std::shared_ptr<Node>;

struct Node {
    Tensor value;
    Tensor grad;
    bool requires_grad = false;
    bool grad_owned = false;      // grad may be modified in place
    bool grad_is_buffer = false;  // grad is a preallocated buffer view: always accumulate
    bool retain_grad = false;     // keep grad of a non-leaf after backward
    const char* op = "leaf";
    std::vector<NodePtr> inputs;
    /// Computes the inputs' gradients from this->grad and accumulates them into the inputs.
    std::function<void(Node&)> backward_fn;

    void accumulate_grad(const Tensor& g);
};

class Var {
public:
    Var() = default;
    explicit Var(Tensor value, bool requires_grad = false) : n_(std::make_shared<Node>()) {
        n_->value = std::move(value);
        n_->requires_grad = requires_grad;
    }
    explicit Var(NodePtr n) : n_(std::move(n)) {}

    bool defined() const { return n_ != nullptr; }
    const Tensor& value() const { return n_->value; }
    const Tensor& grad() const { return n_->grad; }
    bool requires_grad() const { return n_ && n_->requires_grad; }
    const Shape& shape() const { return n_->value.shape(); }
    const NodePtr& node() const { return n_; }
    /// Binds the gradient of this leaf to `buffer` (same shape); contributions add into it.
    void bind_grad(const Tensor& buffer) {
        n_->grad = buffer;
        n_->grad_is_buffer = true;
        n_->grad_owned = true;
    }
    /// Keeps this (non-leaf) Var's gradient after backward, for inspection.
    void retain_grad() { n_->retain_grad = true; }
    /// Same value, cut from the graph (the paper's stop-gradient sg(.)).
    Var detach() const { return Var(n_->value, false); }

    /// Backpropagates from this Var. A scalar seeds with 1; otherwise `seed` (same shape) is needed.
    void backward(const Tensor& seed = Tensor()) const;

private:
    NodePtr n_;
};

/// While alive, new Vars record no graph (inference, EMA targets, density fitting).
class NoGradGuard {
public:
    NoGradGuard();
    ~NoGradGuard();
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool prev_;
};
bool grad_enabled();

/// Builds the result Var of an op: records inputs and closure only when grad is enabled and
/// some input requires it.
Var make_result(Tensor value, const char* op, std::vector<NodePtr> inputs, std::function<void(Node&)> backward_fn);

}  // namespace fsad
