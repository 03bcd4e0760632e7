// Image decoding (stb_image: PNG, JPEG, BMP, TGA, ...; 8/16-bit, gray, gray+alpha, RGB, RGBA)
// into RGB float tensors [3,H,W] in [0,1], bilinear resizing and ImageNet normalisation.
#pragma once
#include <string>

#include "fsad/core/tensor.hpp"

namespace fsad::io {

/// Decodes `path` to [3,H,W] RGB in [0,1]: gray is replicated, alpha dropped, 16-bit kept at
/// full precision. Throws IOError naming the file when it cannot be read or decoded.
Tensor load_image(const std::string& path);
/// Decodes an in-memory encoded image; `name` is used in messages.
Tensor decode_image(const std::string& bytes, const std::string& name);
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
