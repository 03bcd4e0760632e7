// Batch normalisation on the GPU: the kernels and their launch plans are in batchnorm.cuh (run
// by the CPU tests on the SIMT emulator too); here, the tensors, the scratch and the stream.
#include "batchnorm.cuh"
#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

bn::Layout layout(const Tensor& x) { return {x.dim(0), x.dim(1), x.ndim() == 4 ? x.dim(2) * x.dim(3) : 1}; }
}  // namespace

void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float momentum, float eps, const Tensor& mean, const Tensor& invstd,
                             const Tensor& y, math::Activation act) {
    const bn::Layout L = layout(x);
    if (L.n * L.hw == 0 || L.c == 0) return;
    const int dev = x.device().index;
    StreamLaunch launch{context(dev).stream};
    const bn::Plan p = bn::plan(L);
    Scratch<double> part(dev, p.part_count());
    Scratch<float> coeff(dev, p.coeff_count());
    bn::forward_train(launch, p, x.data(), gamma.data(), beta.data(), running_mean.data(), running_var.data(), momentum, eps,
                      mean.data(), invstd.data(), y.data(), act, part.p, coeff.p);
}

void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                            const Tensor& running_var, float eps, const Tensor& y, math::Activation act) {
    batchnorm_eval_residual(x, gamma, beta, running_mean, running_var, eps, nullptr, act, y);
}

void batchnorm_eval_residual(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float eps, const Tensor* residual, math::Activation act,
                             const Tensor& y) {
    if (x.numel() == 0) return;
    const int dev = x.device().index;
    StreamLaunch launch{context(dev).stream};
    const bn::Plan p = bn::plan(layout(x));
    Scratch<float> coeff(dev, p.coeff_count());
    bn::forward_eval(launch, p, x.data(), gamma.data(), beta.data(), running_mean.data(), running_var.data(), eps,
                     residual ? residual->data() : nullptr, y.data(), act, coeff.p);
}

void batchnorm_invstd(const Tensor& var, float eps, const Tensor& invstd) {
    if (var.numel() == 0) return;
    StreamLaunch launch{context(var.device().index).stream};
    bn::invstd(launch, var.data(), eps, var.numel(), invstd.data());
}

void batchnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& invstd, bool batch_stats,
                        const Tensor& dy, const Tensor* y, math::Activation act, const Tensor* dx, const Tensor* dgamma,
                        const Tensor* dbeta) {
    const bn::Layout L = layout(x);
    if (L.c == 0) return;
    if (L.n * L.hw == 0) {  // no values: zero parameter gradients, an empty dx
        if (dgamma) fill(*dgamma, 0.0f);
        if (dbeta) fill(*dbeta, 0.0f);
        return;
    }
    const float* yp = (y && act != math::Activation::Identity) ? y->data() : nullptr;
    if (act != math::Activation::Identity && !yp) throw Error("batchnorm_backward: the fused output y is needed for the activation");
    const int dev = x.device().index;
    StreamLaunch launch{context(dev).stream};
    const bn::Plan p = bn::plan(L);
    Scratch<double> part(dev, p.part_count());
    Scratch<float> sums(dev, p.coeff_count());
    bn::backward(launch, p, x.data(), gamma.data(), mean.data(), invstd.data(), batch_stats, dy.data(), yp,
                 act, dx ? dx->data() : nullptr, dgamma ? dgamma->data() : nullptr, dbeta ? dbeta->data() : nullptr, part.p,
                 sums.p);
}

}  // namespace fsad::cuda
