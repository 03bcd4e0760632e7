// Pooling on the GPU: the kernels and their launches are in pool.cuh (run by the CPU tests on
// the SIMT emulator too); here, the tensors and the stream.
#include "common.cuh"
#include "kernels.hpp"
#include "pool.cuh"

namespace fsad::cuda {
namespace {

pool::Geo geo(const Tensor& x, const Tensor& y, const Pool2dParams& p) {
    return {x.dim(0) * x.dim(1), x.dim(2), x.dim(3), y.dim(2), y.dim(3), p.kh, p.kw, p.stride_h, p.stride_w, p.pad_h, p.pad_w};
}
StreamLaunch launcher(const Tensor& t) { return {context(t.device().index).stream}; }

}  // namespace

void maxpool2d_forward(const Tensor& x, const Pool2dParams& p, const Tensor& y) {
    if (y.numel() == 0) return;
    auto launch = launcher(x);
    pool::max_forward(launch, geo(x, y, p), x.data(), y.data());
}
void maxpool2d_backward(const Tensor& x, const Tensor& dy, const Pool2dParams& p, const Tensor& dx) {
    if (dx.numel() == 0) return;
    FSAD_CHECK(x.dim(2) * x.dim(3) < (int64_t(1) << 31), "maxpool2d_backward: planes of 2^31 values or more are not supported on the GPU");
    auto launch = launcher(x);
    Scratch<int32_t> arg(x.device().index, static_cast<size_t>(dy.numel()));
    pool::max_backward(launch, geo(x, dy, p), x.data(), dy.data(), dx.data(), arg.p);
}
void avgpool2d_forward(const Tensor& x, const Pool2dParams& p, const Tensor& y) {
    if (y.numel() == 0) return;
    auto launch = launcher(x);
    pool::avg_forward(launch, geo(x, y, p), x.data(), y.data());
}
void avgpool2d_backward(const Tensor& dy, const Pool2dParams& p, const Tensor& dx) {
    if (dx.numel() == 0) return;
    auto launch = launcher(dy);
    pool::avg_backward(launch, geo(dx, dy, p), dy.data(), dx.data());
}
void global_avgpool_forward(const Tensor& x, const Tensor& y) {
    const int64_t nc = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
    if (nc == 0) return;
    auto launch = launcher(x);
    pool::global_avg_forward(launch, x.data(), y.data(), nc, hw);
}
void global_avgpool_backward(const Tensor& dy, const Tensor& dx) {
    const int64_t nc = dx.dim(0) * dx.dim(1), hw = dx.dim(2) * dx.dim(3);
    if (nc * hw == 0) return;
    auto launch = launcher(dy);
    pool::global_avg_backward(launch, dy.data(), dx.data(), nc, hw);
}

}  // namespace fsad::cuda
