// Winograd F(2x2,3x3) convolution on the CPU (see winograd.cpp for the transforms).
#pragma once
#include "fsad/core/ops.hpp"

namespace fsad::cpu::winograd {

/// 3x3, stride 1, no dilation, one group, equal padding <= 2.
bool applicable(const Tensor& x, const Tensor& w, const ops::Conv2dParams& p);
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const ops::Conv2dParams& p, const Tensor& y);
void conv2d_backward_data(const Tensor& w, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dx);
void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dw);

}  // namespace fsad::cpu::winograd
