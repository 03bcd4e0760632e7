// Image decoding (stb_image: PNG, JPEG, BMP, TGA, PGM/PPM; 8/16-bit, gray, gray+alpha, RGB, RGBA)
// into RGB float tensors [3,H,W] in [0,1]; PNG and JPEG encoding.
#pragma once
#include <string>

#include "fsad/core/tensor.hpp"
#include "fsad/imgproc/resize.hpp"
#include "fsad/imgproc/transforms.hpp"

namespace fsad::io {

/// The largest image decode_image / load_image accept, in pixels (width x height): 2^26, e.g.
/// 8192 x 8192, whose float tensor takes 768 MiB. Checked on the header before any allocation,
/// so that a small file claiming a huge size (a "dimension bomb") is refused at once.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

/// Decodes `path` to [3,H,W] RGB in [0,1]: gray is replicated, alpha dropped, 16-bit kept at
/// full precision. Throws IOError naming the file when it cannot be read or decoded, or when its
/// header claims more than kMaxImagePixels pixels.
Tensor load_image(const std::string& path);
/// Decodes an in-memory encoded image; `name` is used in messages. Images of more than max_pixels
/// pixels are refused (IOError) on their header, before anything is allocated.
Tensor decode_image(const std::string& bytes, const std::string& name, int64_t max_pixels = kMaxImagePixels);

// resizing, normalisation and the heat-map overlay, now in imgproc/: named here too for their
// callers as io::...
using imgproc::heatmap_overlay;
using imgproc::imagenet_normalize;
using imgproc::imagenet_normalize_into;
using imgproc::resize_antialias;
using imgproc::resize_bilinear;
using imgproc::resize_short_center_crop;

/// Writes [3,H,W] (or [1,H,W]) in [0,1] as an 8-bit PNG, atomically.
void write_png(const std::string& path, const Tensor& img);
/// Encodes [3,H,W] (or [1,H,W]) in [0,1] as 8-bit PNG / baseline JPEG bytes (quality 1..100).
std::string encode_png(const Tensor& img);
std::string encode_jpeg(const Tensor& img, int quality);

}  // namespace fsad::io
