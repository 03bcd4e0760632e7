// Adam over a model's flat parameter buffer, and the EMA update of a target model (BYOL).
#pragma once
#include <cmath>

#include "fsad/core/ops.hpp"
#include "fsad/nn/module.hpp"

namespace fsad::nn {

/// Adam (PyTorch's torch.optim.Adam semantics, L2 weight decay) as one pass over the flat buffer
/// (one per run of trainable parameters when some are frozen).
class Adam {
public:
    struct Options {
        float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.99f, eps = 1e-8f, weight_decay = 0.0f;
    };
    /// requires model.flattened(). The model must outlive the optimiser.
    Adam(Module& model, const Options& o) : model_(model), o_(o) {
        FSAD_CHECK(model.flattened(), "Adam: the model must be flattened (Module::flatten) first");
        FSAD_CHECK(o.lr >= 0.0f && o.beta1 >= 0.0f && o.beta1 < 1.0f && o.beta2 >= 0.0f && o.beta2 < 1.0f && o.eps >= 0.0f,
                   "Adam: invalid options (lr ", o.lr, ", betas ", o.beta1, "/", o.beta2, ", eps ", o.eps, ")");
        m_ = Tensor::zeros(model.flat_params().shape(), model.flat_params().device());
        v_ = Tensor::zeros(model.flat_params().shape(), model.flat_params().device());
    }
    /// One step; drops the model's inference preparation (Module::prepare_inference), whose
    /// copies of the weights it makes stale.
    void step() {
        ++t_;
        model_.unprepare();
        math::AdamStep s{o_.lr, o_.beta1, o_.beta2, o_.eps, o_.weight_decay,
                         1.0f - static_cast<float>(std::pow(static_cast<double>(o_.beta1), t_)),
                         static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(o_.beta2), t_)))};
        // One pass over the flat buffer, or one per run of trainable parameters when some are
        // frozen (Module::freeze): a frozen parameter is not touched, not even by weight decay.
        int64_t off = 0, run = -1;
        auto flush = [&](int64_t end) {
            if (run >= 0 && end > run)
                ops::adam_step(model_.flat_params().slice(run, end), model_.flat_grads().slice(run, end),
                               m_.slice(run, end), v_.slice(run, end), s);
            run = -1;
        };
        for (Var* p : model_.parameters()) {
            if (p->requires_grad()) {
                if (run < 0) run = off;
            } else {
                flush(off);
            }
            off += p->value().numel();
        }
        flush(off);
    }
    void zero_grad() { model_.zero_grad(); }
    int64_t steps() const { return t_; }
    Options& options() { return o_; }

private:
    Module& model_;
    Options o_;
    Tensor m_, v_;
    int64_t t_ = 0;
};

/// target <- beta*target + (1-beta)*online, over parameters and buffers (BatchNorm running
/// statistics). requires both flattened and of the same architecture.
inline void ema_update(Module& target, Module& online, float beta) {
    FSAD_CHECK(target.flattened() && online.flattened(), "ema_update: both models must be flattened");
    target.unprepare();  // its prepared weights (Module::prepare_inference) go stale
    ops::ema_update(target.flat_params(), online.flat_params(), beta);
    ops::ema_update(target.flat_buffers(), online.flat_buffers(), beta);
}

}  // namespace fsad::nn
