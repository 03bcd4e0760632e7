// Image decoding (stb_image: PNG, JPEG, BMP, TGA, PGM/PPM; 8/16-bit, gray, gray+alpha, RGB, RGBA)
// into RGB float tensors [3,H,W] in [0,1], bilinear resizing and ImageNet normalisation.
#pragma once
#include <string>

#include "fsad/core/tensor.hpp"

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
/// Bilinear resize of [C,H,W] to [C,out_h,out_w] (half-pixel centres, as PyTorch's
/// F.interpolate(mode="bilinear", align_corners=False) without antialiasing).
Tensor resize_bilinear(const Tensor& img, int64_t out_h, int64_t out_w);
/// Resize with a triangle (bilinear) filter whose support widens with the downscaling factor,
/// as Pillow's Image.resize(..., BILINEAR) (anti-aliased; the same as bilinear when enlarging).
/// To the same size it is the identity (a copy).
Tensor resize_antialias(const Tensor& img, int64_t out_h, int64_t out_w);
/// Resizes so that the short side is `short_side`, then crops the centre out_h x out_w.
Tensor resize_short_center_crop(const Tensor& img, int64_t short_side, int64_t out_h, int64_t out_w);
/// A heat-map overlay: img [3,H,W] in [0,1] half-blended with a blue-green-yellow-red colour
/// map of `map` [H,W] (values at or below lo blue, at or above hi red).
Tensor heatmap_overlay(const Tensor& img, const Tensor& map, float lo, float hi);
/// (x - mean) / std per channel with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
Tensor imagenet_normalize(const Tensor& img);
/// The same into dst (3*H*W floats), e.g. a slice of a batch.
void imagenet_normalize_into(const Tensor& img, float* dst);
/// Writes [3,H,W] (or [1,H,W]) in [0,1] as an 8-bit PNG, atomically.
void write_png(const std::string& path, const Tensor& img);
/// Encodes [3,H,W] (or [1,H,W]) in [0,1] as 8-bit PNG / baseline JPEG bytes (quality 1..100).
std::string encode_png(const Tensor& img);
std::string encode_jpeg(const Tensor& img, int quality);

}  // namespace fsad::io
