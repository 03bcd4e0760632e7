// Convolution on tiny planes as one dense matrix (see dense_conv.cpp).
#pragma once
#include "epilogue.hpp"
#include "fsad/core/ops.hpp"

namespace fsad::cpu::dense_conv {

/// One group, and an input plane of at most half as many positions as the kernel has taps
/// (2x2 or smaller planes under a 3x3 kernel), where the dense matrix is smaller than im2col's.
bool applicable(const Tensor& x, const Tensor& w, const ops::Conv2dParams& p);
void conv2d_forward(const Tensor& x, const Tensor& w, const Epilogue& e, const ops::Conv2dParams& p, const Tensor& y);
/// Either gradient may be null.
void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const ops::Conv2dParams& p, const Tensor* dx,
                     const Tensor* dw);

}  // namespace fsad::cpu::dense_conv
