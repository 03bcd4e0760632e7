// Layers with PyTorch's parameter names, shapes, defaults and initialisations.
#pragma once
#include <cmath>
#include <memory>
#include <vector>

#include "fsad/autograd/functions.hpp"
#include "fsad/nn/module.hpp"

namespace fsad::nn {

/// Conv2d: weight [out, in/groups, k, k]; PyTorch's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class Conv2d : public Module {
public:
    struct Options {
        int64_t in, out, kernel;
        int stride = 1, padding = 0, dilation = 1, groups = 1;
        bool bias = false;
    };
    Conv2d(const Options& o, Rng& rng) : o_(o) {
        FSAD_CHECK(o.in % o.groups == 0 && o.out % o.groups == 0, "Conv2d: channels ", o.in, "->", o.out,
                   " not divisible by groups ", o.groups);
        const float fan_in = static_cast<float>(o.in / o.groups * o.kernel * o.kernel);
        const float bound = 1.0f / std::sqrt(fan_in);
        weight_ = &register_parameter("weight",
                                      rng.uniform_tensor(Shape{o.out, o.in / o.groups, o.kernel, o.kernel}, -bound, bound));
        if (o.bias) bias_ = &register_parameter("bias", rng.uniform_tensor(Shape{o.out}, -bound, bound));
        p_.stride_h = p_.stride_w = o.stride;
        p_.pad_h = p_.pad_w = o.padding;
        p_.dil_h = p_.dil_w = o.dilation;
        p_.groups = o.groups;
    }
    Var forward(const Var& x) override { return ag::conv2d(x, *weight_, bias_, p_); }
    Var& weight() { return *weight_; }
    bool has_bias() const { return bias_ != nullptr; }
    const Options& options() const { return o_; }
    ops::Conv2dParams& params() { return p_; }
    /// The weights prepared by prepare_inference() (null when not prepared).
    const ops::PreparedConv* prepared() const { return prepared_.get(); }

protected:
    void prepare_own(bool on) override {
        prepared_.reset();
        if (on) prepared_ = std::make_shared<ops::PreparedConv>(weight_->value(), p_);
    }

private:
    std::shared_ptr<ops::PreparedConv> prepared_;
    Options o_;
    ops::Conv2dParams p_;
    Var* weight_ = nullptr;
    Var* bias_ = nullptr;
};

/// BatchNorm over channel dim 1 of [N,C,H,W] (2d) or [N,C] (1d); weight 1, bias 0,
/// running_mean 0, running_var 1; momentum 0.1, eps 1e-5 as PyTorch.
class BatchNorm : public Module {
public:
    explicit BatchNorm(int64_t channels, float eps = 1e-5f, float momentum = 0.1f) : eps_(eps), momentum_(momentum) {
        weight_ = &register_parameter("weight", Tensor::full(Shape{channels}, 1.0f));
        bias_ = &register_parameter("bias", Tensor::zeros(Shape{channels}));
        running_mean_ = &register_buffer("running_mean", Tensor::zeros(Shape{channels}));
        running_var_ = &register_buffer("running_var", Tensor::full(Shape{channels}, 1.0f));
    }
    Var forward(const Var& x) override { return forward_act(x, math::Activation::Identity); }
    /// Batch norm followed by `act`, fused into one pass (forward and backward).
    Var forward_act(const Var& x, math::Activation act) {
        if (is_training())
            return ag::batchnorm_train(x, *weight_, *bias_, *running_mean_, *running_var_, momentum_, eps_, act);
        return ag::batchnorm_eval(x, *weight_, *bias_, *running_mean_, *running_var_, eps_, act);
    }
    /// act(this(conv(x)) + residual), residual optional (a ResNet block's shortcut). In evaluation
    /// mode, when no gradient is being recorded (inference: a NoGradGuard, or nothing requiring
    /// one), as one fused op that normalises, adds and activates the convolution's outputs as they
    /// are written (ops::conv2d_bn_eval_forward); otherwise as the separate differentiable ops.
    Var conv_forward_act(Conv2d& conv, const Var& x, math::Activation act, const Var* residual = nullptr) {
        const bool record = grad_enabled() && (x.requires_grad() || conv.weight().requires_grad() ||
                                               weight_->requires_grad() || bias_->requires_grad() ||
                                               (residual && residual->requires_grad()));
        if (is_training() || record || conv.has_bias()) {
            if (!residual) return forward_act(conv.forward(x), act);
            Var s = ag::add(forward_act(conv.forward(x), math::Activation::Identity), *residual);
            return act == math::Activation::Identity ? s : ag::activation(s, act);
        }
        return Var(ops::conv2d_bn_eval_forward(x.value(), conv.weight().value(), weight_->value(), bias_->value(),
                                               *running_mean_, *running_var_, eps_, conv.params(), act,
                                               residual ? &residual->value() : nullptr, conv.prepared()));
    }
    float eps() const { return eps_; }

private:
    float eps_, momentum_;
    Var* weight_;
    Var* bias_;
    Tensor* running_mean_;
    Tensor* running_var_;
};
using BatchNorm2d = BatchNorm;
using BatchNorm1d = BatchNorm;

/// Linear: weight [out, in], bias [out]; PyTorch's default init U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
public:
    Linear(int64_t in, int64_t out, Rng& rng, bool bias = true) {
        const float bound = 1.0f / std::sqrt(static_cast<float>(in));
        weight_ = &register_parameter("weight", rng.uniform_tensor(Shape{out, in}, -bound, bound));
        if (bias) bias_ = &register_parameter("bias", rng.uniform_tensor(Shape{out}, -bound, bound));
    }
    Var forward(const Var& x) override { return ag::linear(x, *weight_, bias_); }

private:
    Var* weight_;
    Var* bias_ = nullptr;
};

class Activation : public Module {
public:
    explicit Activation(math::Activation a = math::Activation::ReLU) : a_(a) {}
    Var forward(const Var& x) override { return ag::activation(x, a_); }
    math::Activation kind() const { return a_; }

private:
    math::Activation a_;
};

/// Children named "0", "1", ... (nn.Sequential's keys).
class Sequential : public Module {
public:
    template <class M>
    std::shared_ptr<M> add(std::shared_ptr<M> m) {
        layers_.push_back(m);
        return register_module(std::to_string(layers_.size() - 1), m);
    }
    /// A Conv2d followed by a BatchNorm runs as BatchNorm::conv_forward_act (fused in inference).
    Var forward(const Var& x) override {
        Var h = x;
        for (size_t i = 0; i < layers_.size(); ++i) {
            auto* conv = dynamic_cast<Conv2d*>(layers_[i].get());
            auto* bn = i + 1 < layers_.size() ? dynamic_cast<BatchNorm*>(layers_[i + 1].get()) : nullptr;
            if (conv && bn) {
                h = bn->conv_forward_act(*conv, h, math::Activation::Identity);
                ++i;
            } else {
                h = layers_[i]->forward(h);
            }
        }
        return h;
    }
    size_t size() const { return layers_.size(); }
    Module& operator[](size_t i) { return *layers_[i]; }

private:
    std::vector<std::shared_ptr<Module>> layers_;
};

/// BYOL's projector / predictor: Linear(in, hidden) - BatchNorm1d - ReLU - Linear(hidden, out),
/// keys 0.*, 1.*, 3.* as the PyTorch nn.Sequential (BatchNorm and ReLU run fused).
class MLP : public Sequential {
public:
    MLP(int64_t in, int64_t hidden, int64_t out, Rng& rng) {
        fc1_ = add(std::make_shared<Linear>(in, hidden, rng));
        bn_ = add(std::make_shared<BatchNorm1d>(hidden));
        add(std::make_shared<Activation>());
        fc2_ = add(std::make_shared<Linear>(hidden, out, rng));
    }
    Var forward(const Var& x) override {
        return fc2_->forward(bn_->forward_act(fc1_->forward(x), math::Activation::ReLU));
    }

private:
    std::shared_ptr<Linear> fc1_, fc2_;
    std::shared_ptr<BatchNorm1d> bn_;
};

/// torchvision's Conv2dNormActivation: Sequential(conv, bn, act) with keys 0.*, 1.*; batch
/// norm and activation run fused.
class ConvBNAct : public Sequential {
public:
    ConvBNAct(std::shared_ptr<Conv2d> conv, std::shared_ptr<BatchNorm2d> bn, math::Activation a) : a_(a) {
        conv_ = add(std::move(conv));
        bn_ = add(std::move(bn));
        add(std::make_shared<Activation>(a));
    }
    Var forward(const Var& x) override { return bn_->conv_forward_act(*conv_, x, a_); }

private:
    math::Activation a_;
    std::shared_ptr<Conv2d> conv_;
    std::shared_ptr<BatchNorm2d> bn_;
};

}  // namespace fsad::nn
