#include <unordered_set>

#include "fsad/autograd/variable.hpp"
#include "fsad/core/ops.hpp"

namespace fsad {
namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

void Node::accumulate_grad(const Tensor& g) {
    if (!requires_grad) return;
    if (g.shape() != value.shape() && g.numel() == value.numel()) {
        accumulate_grad(g.reshape(value.shape()));
        return;
    }
    FSAD_CHECK(g.shape() == value.shape(), "autograd: gradient ", g.shape().str(), " for value ",
               value.shape().str(), " of op ", op);
    if (grad_is_buffer) {
        ops::add_(grad, g);
    } else if (!grad.defined()) {
        grad = g;
        grad_owned = false;
    } else if (!grad_owned) {
        grad = ops::add(grad, g);
        grad_owned = true;
    } else {
        ops::add_(grad, g);
    }
}

Var make_result(Tensor value, const char* op, std::vector<NodePtr> inputs, std::function<void(Node&)> backward_fn) {
    auto n = std::make_shared<Node>();
    n->value = std::move(value);
    n->op = op;
    if (g_grad_enabled) {
        bool any = false;
        for (const auto& i : inputs) any = any || (i && i->requires_grad);
        if (any) {
            n->requires_grad = true;
            n->inputs = std::move(inputs);
            n->backward_fn = std::move(backward_fn);
        }
    }
    return Var(n);
}

void Var::backward(const Tensor& seed) const {
    FSAD_CHECK(defined(), "backward: undefined Var");
    FSAD_CHECK(n_->requires_grad, "backward: this Var does not require grad (no parameter or input needs one)");
    Tensor s = seed;
    if (!s.defined()) {
        FSAD_CHECK(value().numel() == 1, "backward: a non-scalar output of shape ", value().shape().str(),
                   " needs an explicit seed gradient");
        s = Tensor::full(value().shape(), 1.0f, value().device());
    }
    FSAD_CHECK(s.shape() == value().shape(), "backward: seed ", s.shape().str(), " for output ",
               value().shape().str());

    // Reverse topological order by iterative DFS (deep nets would overflow a recursive one).
    // `order` owns the nodes: freeing a node's inputs below must not destroy nodes still to visit.
    std::vector<NodePtr> order;
    std::unordered_set<Node*> seen;
    std::vector<std::pair<NodePtr, size_t>> stack{{n_, 0}};
    seen.insert(n_.get());
    while (!stack.empty()) {
        Node* node = stack.back().first.get();
        size_t& next = stack.back().second;
        if (next < node->inputs.size()) {
            NodePtr child = node->inputs[next++];
            if (child && child->requires_grad && !seen.count(child.get())) {
                seen.insert(child.get());
                stack.emplace_back(std::move(child), 0);
            }
        } else {
            order.push_back(std::move(stack.back().first));
            stack.pop_back();
        }
    }
    n_->accumulate_grad(s);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        Node* node = it->get();
        if (!node->backward_fn || !node->grad.defined()) continue;
        node->backward_fn(*node);
        // Free what the step needed: the closure's saved tensors and this node's gradient.
        node->backward_fn = nullptr;
        node->inputs.clear();
        if (!node->retain_grad) node->grad = Tensor();
    }
}

}  // namespace fsad
