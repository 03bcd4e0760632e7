// Winograd F(2x2,3x3) and F(4x4,3x3) convolution on the CPU (see winograd.cpp for the transforms).
#pragma once
#include "epilogue.hpp"
#include "fsad/core/ops.hpp"

namespace fsad::cpu::winograd {

/// 3x3, stride 1, no dilation, one group, equal padding <= 2.
bool applicable(const Tensor& x, const Tensor& w, const ops::Conv2dParams& p);
/// tile: output tile size m, 2 (F(2x2,3x3)) or 4 (F(4x4,3x3)).
/// `e` is applied to the outputs as the output transform writes them. With `prepared`, the
/// transformed filters are its form number `tile` (made on first use) instead of computed here.
void conv2d_forward(const Tensor& x, const Tensor& w, const Epilogue& e, const ops::Conv2dParams& p, const Tensor& y,
                    int tile, const ops::PreparedConv* prepared = nullptr);
void conv2d_backward_data(const Tensor& w, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dx, int tile);
/// F(2x2,3x3) only.
void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dw);

}  // namespace fsad::cpu::winograd
