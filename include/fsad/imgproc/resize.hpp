// Resizing of images [C,H,W]: bilinear, anti-aliased, and short side then centre crop.
#pragma once
#include <cstdint>

#include "fsad/core/tensor.hpp"

namespace fsad::imgproc {

/// Bilinear resize of [C,H,W] to [C,out_h,out_w] (half-pixel centres, as PyTorch's
/// F.interpolate(mode="bilinear", align_corners=False) without antialiasing).
Tensor resize_bilinear(const Tensor& img, int64_t out_h, int64_t out_w);
/// Resize with a triangle (bilinear) filter whose support widens with the downscaling factor,
/// as Pillow's Image.resize(..., BILINEAR) (anti-aliased; the same as bilinear when enlarging).
/// To the same size it is the identity (a copy).
Tensor resize_antialias(const Tensor& img, int64_t out_h, int64_t out_w);
/// Resizes so that the short side is `short_side`, then crops the centre out_h x out_w.
Tensor resize_short_center_crop(const Tensor& img, int64_t short_side, int64_t out_h, int64_t out_w);

}  // namespace fsad::imgproc
