// Augmentations of the method (METHOD.md "Augmentations"), on RGB images [3,H,W] in [0,1]:
// the regular augmentation t (industrial: affine + colour; CIFAR: affine only) and the
// negative augmentations t_n (CutPaste, CutPaste-scar, their union; CIFAR: blur + brightness
// and contrast shifts). Every random choice comes from the Rng passed in, so a seed fixes them;
// batches seed one Rng per image, so results do not depend on the thread count.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fsad/core/rng.hpp"
#include "fsad/core/tensor.hpp"
#include "fsad/imgproc/transforms.hpp"

namespace fsad::method {

struct AugmentOptions {
    int64_t size = 224;               ///< output side (working resolution)
    int64_t out_h = 0, out_w = 0;     ///< > 0: output out_h x out_w instead of size x size, the
                                      ///< crop's aspect range taken relative to out_w / out_h
    bool colour = true;               ///< false: affine part only (the paper's CIFAR setting)
    float scale_min = 0.8f, scale_max = 1.0f;  ///< random resized crop: area fraction
    float ratio_min = 3.0f / 4.0f, ratio_max = 4.0f / 3.0f;
    float hflip = 0.5f, vflip = 0.5f;
    float max_rotation = 15.0f;       ///< degrees, U(-r, r)
    float jitter_p = 0.8f, brightness = 0.2f, contrast = 0.2f, saturation = 0.2f, hue = 0.05f;
    float blur_p = 0.2f, blur_sigma_min = 0.1f, blur_sigma_max = 2.0f;
    float grayscale_p = 0.2f;
};

enum class Negative { None, CutPaste, Scar, Union, CifarBlurShift };
Negative parse_negative(const std::string& s);  ///< none | cutpaste | scar | union | cifar
std::string to_string(Negative n);

/// t(img): random resized crop to size x size, flips, rotation, then (if colour) colour jitter,
/// grayscale and Gaussian blur, each with its probability.
Tensor augment(const Tensor& img, const AugmentOptions& opt, Rng& rng);
/// A synthetic local defect for choosing a scorer without real anomalies: one of CutPaste,
/// CutPaste-scar or a spot (a soft-edged ellipse, 1-6% of the image, darkened or brightened by
/// 0.25-0.5 and lightly textured with noise), each with probability 1/3.
Tensor synthetic_defect(const Tensor& img, Rng& rng);
/// A synthetic whole-image corruption (the kind CIFAR10-C's anomalies are): Gaussian noise of
/// sigma 0.04-0.1, or blur with brightness and contrast shifts (Negative::CifarBlurShift), each
/// with probability 1/2.
Tensor synthetic_corruption(const Tensor& img, Rng& rng);
/// t_n(img) on an image already at working resolution.
Tensor negative(const Tensor& img, Negative kind, Rng& rng);

// Building blocks (deterministic), now in imgproc/transforms.hpp; named here too for callers and
// tests that use them as method::...
using imgproc::adjust_brightness;
using imgproc::adjust_contrast;
using imgproc::adjust_hue;
using imgproc::adjust_saturation;
using imgproc::crop_resize;
using imgproc::flip;
using imgproc::gaussian_blur;
using imgproc::rotate;
using imgproc::to_grayscale;

/// Writes images [3,H,W] (same size) as one PNG grid with `cols` columns, atomically.
void write_grid(const std::string& path, const std::vector<Tensor>& images, int64_t cols);

}  // namespace fsad::method
