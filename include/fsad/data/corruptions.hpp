// Common corruptions at severity 2 (Hendrycks & Dietterich's CIFAR-10-C generator, the
// parameters METHOD.md lists), on RGB images [3,H,W] in [0,1]. The anomalies of the CIFAR10-C
// protocol. Every random choice comes from the Rng, so a seed fixes the corrupted image.
#pragma once
#include <string>
#include <vector>

#include "fsad/core/rng.hpp"
#include "fsad/core/tensor.hpp"

namespace fsad::data {

/// The default nine: gaussian_noise, shot_noise, impulse_noise, defocus_blur, zoom_blur,
/// brightness, contrast, pixelate, jpeg.
std::vector<std::string> default_corruptions();
/// Every corruption `corrupt` knows (the nine plus glass_blur and elastic).
std::vector<std::string> all_corruptions();

/// Applies `name` at severity 2. Throws fsad::Error naming the corruption when unknown.
Tensor corrupt(const Tensor& img, const std::string& name, Rng& rng);

// Building blocks, exposed for tests.
Tensor rgb_to_hsv(const Tensor& img);
Tensor hsv_to_rgb(const Tensor& hsv);
Tensor box_resize(const Tensor& img, int64_t out_h, int64_t out_w);  ///< Pillow's BOX filter (area average)
Tensor filter2d(const Tensor& img, const std::vector<float>& kernel, int64_t k);  ///< k x k, reflect-101 border

}  // namespace fsad::data
