// Image processing on RGB images [3,H,W] in [0,1], deterministic (torchvision.transforms.functional's
// maths): crops with resizing, rotation, flips, colour adjustments, grayscale, Gaussian blur. The
// method's augmentations (method/augment.hpp) and the dataset corruptions (data/) are built on these.
#pragma once
#include <cstdint>

#include "fsad/core/tensor.hpp"

namespace fsad::imgproc {

/// Throws fsad::Error naming `what` unless img is a defined RGB image [3,H,W] with H, W > 0.
void check_rgb(const Tensor& img, const char* what);

/// The region (y0, x0, h, w) (fractional pixels) resized bilinearly to out_h x out_w.
Tensor crop_resize(const Tensor& img, double y0, double x0, double h, double w, int64_t out_h, int64_t out_w);
Tensor rotate(const Tensor& img, float degrees);  ///< about the centre, bilinear, zero fill
Tensor flip(const Tensor& img, bool horizontal);
Tensor adjust_brightness(const Tensor& img, float factor);
Tensor adjust_contrast(const Tensor& img, float factor);
Tensor adjust_saturation(const Tensor& img, float factor);
Tensor adjust_hue(const Tensor& img, float shift);  ///< shift in [-0.5, 0.5] of a full turn
Tensor to_grayscale(const Tensor& img);
Tensor gaussian_blur(const Tensor& img, float sigma);  ///< reflect padding, kernel 2*ceil(3 sigma)+1

}  // namespace fsad::imgproc
