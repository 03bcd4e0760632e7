// Augmentations of the method (METHOD.md "Augmentations"), on RGB images [3,H,W] in [0,1]:
// the regular augmentation t (industrial: affine + colour; CIFAR: affine only) and the
// negative augmentations t_n (CutPaste, CutPaste-scar, their union; CIFAR: blur + brightness
// and contrast shifts). Every random choice comes from the Rng passed in, so a seed fixes them;
// batches seed one Rng per image, so results do not depend on the thread count.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fsad/core/ops.hpp"
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
/// grayscale and Gaussian blur, each with its probability. = apply_augment(img, sample_augment(...)).
Tensor augment(const Tensor& img, const AugmentOptions& opt, Rng& rng);
/// A synthetic local defect for choosing a scorer without real anomalies: one of CutPaste,
/// CutPaste-scar or a spot (a soft-edged ellipse, 1-6% of the image, darkened or brightened by
/// 0.25-0.5 and lightly textured with noise), each with probability 1/3.
Tensor synthetic_defect(const Tensor& img, Rng& rng);
/// A synthetic whole-image corruption (the kind CIFAR10-C's anomalies are): Gaussian noise of
/// sigma 0.04-0.1, or blur with brightness and contrast shifts (Negative::CifarBlurShift), each
/// with probability 1/2.
Tensor synthetic_corruption(const Tensor& img, Rng& rng);
/// t_n(img) on an image already at working resolution. = apply_negative(img, sample_negative(...)).
Tensor negative(const Tensor& img, Negative kind, Rng& rng);

// ---- the same split into the random draws and their application, so that a batch of views can
// be made where the network runs (augment_images, negative_images: the ops of core/ops.hpp's
// "image sets" on any device). The draws depend on the image's size only, never on its pixels.

/// torchvision's ColorJitter as drawn: the four adjustments (0 brightness, 1 contrast,
/// 2 saturation, 3 hue) in `order`, each on when its range is positive, with its factor.
struct Jitter {
    int order[4] = {0, 1, 2, 3};
    bool on[4] = {false, false, false, false};
    float factor[4] = {1, 1, 1, 0};
};
/// One view's draws. crop.image is left 0 for the caller to set (augment_images).
struct AugmentParams {
    ops::CropJob crop;           ///< random resized crop (and flips) to the output size
    bool rotate = false;         ///< rotation by `degrees`
    float degrees = 0;
    bool jitter = false;         ///< colour jitter (with jitter_params)
    Jitter jitter_params;
    bool grayscale = false;
    float blur_sigma = 0;        ///< > 0: Gaussian blur of this sigma
};
AugmentParams sample_augment(int64_t height, int64_t width, const AugmentOptions& opt, Rng& rng);
/// The view of one image on the CPU (imgproc's transforms).
Tensor apply_augment(const Tensor& img, const AugmentParams& p);

/// One negative's draws (kind resolved: Union becomes CutPaste or Scar).
struct NegativeParams {
    Negative kind = Negative::None;
    // CutPaste and scar: the patch (ph x pw at (sy, sx)), colour-jittered, placed on a canvas
    // (CutPaste: the patch itself; scar: a side x side square, the strip in its middle, rotated by
    // `degrees`) whose origin goes to (dy, dx)
    int64_t sy = 0, sx = 0, ph = 0, pw = 0;
    Jitter jitter;
    float degrees = 0;
    int64_t side = 0, dy = 0, dx = 0;
    // CifarBlurShift: blur, then brightness, then contrast
    float sigma = 0, brightness = 1, contrast = 1;
};
NegativeParams sample_negative(int64_t height, int64_t width, Negative kind, Rng& rng);
/// The negative of one image on the CPU.
Tensor apply_negative(const Tensor& img, const NegativeParams& p);

/// RGB images [3,H,W] on the CPU (sizes may differ) copied one after another into one tensor on
/// `device`; `layout` gets where each lies (ops::pack_images).
Tensor pack_images(const std::vector<Tensor>& images, std::vector<ops::PackedImage>& layout, Device device = Device::cpu());
/// Views of packed source images (pack_images) on their device: view i is params[i] applied
/// to image params[i].crop.image. Every view must have the same output size; the result is
/// [n,3,h,w] in [0,1], not normalised. Equal to apply_augment's views up to rounding (the same
/// arithmetic; on the CPU, to the bit).
Tensor augment_images(const Tensor& packed, const std::vector<ops::PackedImage>& images,
                      const std::vector<AugmentParams>& params);
/// negative_images(views [n,3,h,w], params[n]): view i's negative, on the views' device.
Tensor negative_images(const Tensor& views, const std::vector<NegativeParams>& params);

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
