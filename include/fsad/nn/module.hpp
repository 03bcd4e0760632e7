// Module: parameters, buffers and children with dotted names (torchvision's state-dict keys),
// train/eval, state dict in and out, and one flat parameter buffer per model.
//
// After construction the root calls flatten(): every parameter becomes a view into one flat
// value buffer, its gradient a view into one flat gradient buffer, and every buffer (BatchNorm
// running statistics) a view into one flat buffer too. zero_grad is then one fill, Adam one
// pass, and the EMA target update one pass over parameters plus one over buffers.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fsad/autograd/variable.hpp"
#include "fsad/core/rng.hpp"

namespace fsad::nn {

class Module {
public:
    virtual ~Module() = default;
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    /// Single-input forward; modules with other signatures provide their own.
    virtual Var forward(const Var& x);

    /// Training or evaluation mode for this module and its children. A frozen module stays in
    /// evaluation mode whatever it is told.
    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }
    /// Freezes this module and its children for fine-tuning: their parameters stop requiring
    /// gradients (no gradient is computed for them, Adam leaves them untouched) and they stay in
    /// evaluation mode (BatchNorm uses and keeps its running statistics). Not undone.
    void freeze();
    bool frozen() const { return frozen_; }

    std::vector<std::pair<std::string, Var*>> named_parameters(const std::string& prefix = "");
    std::vector<std::pair<std::string, Tensor*>> named_buffers(const std::string& prefix = "");
    std::vector<Var*> parameters();
    int64_t num_parameters();

    /// Parameters and buffers by dotted name (values share storage with the module).
    std::map<std::string, Tensor> state_dict();
    /// Copies matching entries in. Shapes must agree; with `strict`, every parameter and buffer
    /// must be present and no unknown key may appear (names listed in the error).
    void load_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true);

    /// Packs parameters, gradients and buffers into flat buffers (see file comment). Idempotent.
    void flatten();
    bool flattened() const { return flat_params_.defined(); }
    const Tensor& flat_params() const { return flat_params_; }
    const Tensor& flat_grads() const { return flat_grads_; }
    const Tensor& flat_buffers() const { return flat_buffers_; }
    void zero_grad();
    /// Moves parameters and buffers to `dev` (a flattened module stays flattened there; gradients
    /// are dropped). Call it on the root: children become views into the root's flat buffers.
    void to(Device dev);
    /// The device of the parameters (the CPU for a module without any).
    Device device();

    /// Prepares this module and its children for repeated inference with their current weights
    /// (ops::PreparedConv for every convolution: on the CPU the weights are packed once instead of
    /// on every call; batch-1 inference gains most). Used by the fused inference path (evaluation
    /// mode, no gradient recorded). Dropped by train(true), load_state_dict, to, flatten, Adam::step
    /// and nn::ema_update (on the target). After changing weights any other way (through data(),
    /// or ops on the flat buffers), call it again: a prepared convolution whose sampled weights
    /// changed throws fsad::Error rather than use its stale copy, but a change that misses every
    /// sample goes unnoticed.
    void prepare_inference();
    /// Drops what prepare_inference() built (memory: up to a few times the weights).
    void unprepare();

protected:
    /// This module's own share of prepare_inference (on) and unprepare (off); children are visited
    /// by the caller.
    virtual void prepare_own(bool on) { (void)on; }
    Var& register_parameter(const std::string& name, Tensor value);
    Tensor& register_buffer(const std::string& name, Tensor value);
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
        children_.emplace_back(name, m);
        return m;
    }

private:
    bool training_ = true;
    bool frozen_ = false;
    std::vector<std::pair<std::string, std::unique_ptr<Var>>> params_;
    std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    Tensor flat_params_, flat_grads_, flat_buffers_;
};

}  // namespace fsad::nn
