// Image processing on RGB images [3,H,W] in [0,1], deterministic (torchvision.transforms.functional's
// maths): crops with resizing, rotation, flips, colour adjustments, grayscale, Gaussian blur, ImageNet
// normalisation and the heat-map overlay. The method's augmentations (method/augment.hpp) and the
// dataset corruptions (data/) are built on these; resizing is in imgproc/resize.hpp.
#pragma once
#include <cstdint>
#include <vector>

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
/// gaussian_blur's weights: 2*ceil(3 sigma)+1 of them, exp(-i^2 / (2 sigma^2)) normalised to sum 1 (float).
std::vector<float> gaussian_taps(float sigma);

/// A heat-map overlay: img [3,H,W] in [0,1] half-blended with a blue-green-yellow-red colour
/// map of `map` [H,W] (values at or below lo blue, at or above hi red).
Tensor heatmap_overlay(const Tensor& img, const Tensor& map, float lo, float hi);
/// (x - mean) / std per channel with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
Tensor imagenet_normalize(const Tensor& img);
/// The same into dst (3*H*W floats), e.g. a slice of a batch.
void imagenet_normalize_into(const Tensor& img, float* dst);

}  // namespace fsad::imgproc
