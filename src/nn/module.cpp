#include "fsad/nn/module.hpp"

#include <set>

#include "fsad/core/ops.hpp"

namespace fsad::nn {

Var Module::forward(const Var&) { throw Error("Module::forward: this module has no single-input forward"); }

void Module::train(bool on) {
    training_ = on && !frozen_;
    if (on) prepare_own(false);
    for (auto& c : children_) c.second->train(on);
}

void Module::prepare_inference() {
    prepare_own(true);
    for (auto& c : children_) c.second->prepare_inference();
}

void Module::unprepare() {
    prepare_own(false);
    for (auto& c : children_) c.second->unprepare();
}

void Module::freeze() {
    frozen_ = true;
    training_ = false;
    for (auto& p : params_) p.second->node()->requires_grad = false;
    for (auto& c : children_) c.second->freeze();
}

Var& Module::register_parameter(const std::string& name, Tensor value) {
    params_.emplace_back(name, std::make_unique<Var>(std::move(value), true));
    return *params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor value) {
    buffers_.emplace_back(name, std::make_unique<Tensor>(std::move(value)));
    return *buffers_.back().second;
}

std::vector<std::pair<std::string, Var*>> Module::named_parameters(const std::string& prefix) {
    std::vector<std::pair<std::string, Var*>> out;
    for (auto& p : params_) out.emplace_back(prefix + p.first, p.second.get());
    for (auto& c : children_) {
        auto sub = c.second->named_parameters(prefix + c.first + ".");
        out.insert(out.end(), sub.begin(), sub.end());
    }
    return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::named_buffers(const std::string& prefix) {
    std::vector<std::pair<std::string, Tensor*>> out;
    for (auto& b : buffers_) out.emplace_back(prefix + b.first, b.second.get());
    for (auto& c : children_) {
        auto sub = c.second->named_buffers(prefix + c.first + ".");
        out.insert(out.end(), sub.begin(), sub.end());
    }
    return out;
}

std::vector<Var*> Module::parameters() {
    std::vector<Var*> out;
    for (auto& p : named_parameters()) out.push_back(p.second);
    return out;
}

int64_t Module::num_parameters() {
    int64_t n = 0;
    for (auto& p : named_parameters()) n += p.second->value().numel();
    return n;
}

std::map<std::string, Tensor> Module::state_dict() {
    std::map<std::string, Tensor> sd;
    for (auto& p : named_parameters()) sd[p.first] = p.second->value();
    for (auto& b : named_buffers()) sd[b.first] = *b.second;
    return sd;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& sd, bool strict) {
    unprepare();
    std::set<std::string> used;
    std::vector<std::string> missing;
    auto load = [&](const std::string& name, const Tensor& dst) {
        auto it = sd.find(name);
        if (it == sd.end()) {
            missing.push_back(name);
            return;
        }
        FSAD_CHECK(it->second.shape() == dst.shape(), "load_state_dict: '", name, "' has shape ",
                   it->second.shape().str(), ", the model expects ", dst.shape().str());
        dst.copy_from(it->second);
        used.insert(name);
    };
    for (auto& p : named_parameters()) load(p.first, p.second->value());
    for (auto& b : named_buffers()) load(b.first, *b.second);
    if (!strict) return;
    std::string msg;
    if (!missing.empty()) {
        msg += std::to_string(missing.size()) + " missing key(s):";
        for (size_t i = 0; i < missing.size() && i < 8; ++i) msg += " " + missing[i];
        if (missing.size() > 8) msg += " ...";
    }
    std::vector<std::string> unexpected;
    for (auto& kv : sd)
        if (!used.count(kv.first)) unexpected.push_back(kv.first);
    if (!unexpected.empty()) {
        msg += (msg.empty() ? "" : "; ") + std::to_string(unexpected.size()) + " unexpected key(s):";
        for (size_t i = 0; i < unexpected.size() && i < 8; ++i) msg += " " + unexpected[i];
        if (unexpected.size() > 8) msg += " ...";
    }
    if (!msg.empty()) throw Error("load_state_dict: " + msg);
}

void Module::flatten() {
    if (flattened()) return;
    unprepare();
    auto params = named_parameters();
    auto buffers = named_buffers();
    int64_t np = 0, nb = 0;
    for (auto& p : params) np += p.second->value().numel();
    for (auto& b : buffers) nb += b.second->numel();
    Device dev = params.empty() ? Device::cpu() : params[0].second->value().device();
    flat_params_ = Tensor::empty(Shape{np}, dev);
    flat_grads_ = Tensor::zeros(Shape{np}, dev);
    flat_buffers_ = Tensor::empty(Shape{nb}, dev);
    int64_t off = 0;
    for (auto& p : params) {
        const Tensor v = p.second->value();  // a copy: the old Var is replaced below
        Tensor view = flat_params_.slice(off, off + v.numel()).reshape(v.shape());
        view.copy_from(v);
        Tensor gview = flat_grads_.slice(off, off + v.numel()).reshape(v.shape());
        *p.second = Var(view, p.second->requires_grad());
        p.second->bind_grad(gview);
        off += v.numel();
    }
    off = 0;
    for (auto& b : buffers) {
        Tensor view = flat_buffers_.slice(off, off + b.second->numel()).reshape(b.second->shape());
        view.copy_from(*b.second);
        *b.second = view;
        off += view.numel();
    }
    // Only the root owns flat buffers: a child flattened earlier (a backbone built on its own)
    // no longer uses its old ones, so they are dropped and it reports flattened() == false.
    std::vector<Module*> stack;
    for (auto& c : children_) stack.push_back(c.second.get());
    while (!stack.empty()) {
        Module* m = stack.back();
        stack.pop_back();
        m->flat_params_ = Tensor();
        m->flat_grads_ = Tensor();
        m->flat_buffers_ = Tensor();
        for (auto& c : m->children_) stack.push_back(c.second.get());
    }
}

void Module::to(Device dev) {
    unprepare();
    const bool was_flat = flattened();
    for (auto& p : named_parameters())
        if (!(p.second->value().device() == dev)) *p.second = Var(p.second->value().to(dev), p.second->requires_grad());
    for (auto& b : named_buffers())
        if (!(b.second->device() == dev)) *b.second = b.second->to(dev);
    if (was_flat && !(flat_params_.device() == dev)) {
        flat_params_ = Tensor();
        flat_grads_ = Tensor();
        flat_buffers_ = Tensor();
        flatten();
    }
}

Device Module::device() {
    auto params = named_parameters();
    return params.empty() ? Device::cpu() : params[0].second->value().device();
}

void Module::zero_grad() {
    if (flattened()) {
        flat_grads_.zero_();
        return;
    }
    for (auto& p : named_parameters()) {
        Node& n = *p.second->node();
        if (n.grad_is_buffer) n.grad.zero_();
        else n.grad = Tensor();
    }
}

}  // namespace fsad::nn
