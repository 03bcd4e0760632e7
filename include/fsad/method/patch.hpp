// Patch-level scoring: where in an image the defect is, and an image score that small defects
// do not get diluted in (one pooled vector per image averages a crack away).
//
//   patch features  the backbone's stride-8 and stride-16 maps (Backbone::patch_stages), each
//                   3x3 average-pooled (stride 1, padding 1, padding counted in the mean), the
//                   stride-16 map bilinearly upsampled (half-pixel centres) to the stride-8 grid,
//                   concatenated: one C-dim vector per stride-8 position (MobileNetV2: 32 + 96 =
//                   128, ResNet18: 128 + 256 = 384).
//   patch Gaussian  one Gaussian shared by every position (mean, Ledoit-Wolf covariance of all
//                   the shots' patches); patch score = Mahalanobis distance (GaussianDensity on
//                   the raw, unnormalised vectors).
//   patch kNN       a memory bank of the shots' patches, subsampled by greedy k-centre coreset
//                   selection; patch score = Euclidean distance to the nearest bank patch (the
//                   squared distances |q|^2 + |b|^2 - 2 q.b as one matrix product per chunk,
//                   the nearest one's distance recomputed exactly).
//   anomaly map     patch scores bilinearly upsampled to the view and Gaussian-blurred (sigma
//                   4 px, 'reflect' borders, kernel truncated at 4 sigma: scipy's
//                   gaussian_filter); the image score is the map's maximum.
// This is the PatchCore / PaDiM family, as ../shared/peers/ad_reference.py defines its two
// patch scorers; tests/test_patch.cpp holds fsad to that reference (tools/make_patch_golden.py).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "fsad/core/tensor.hpp"
#include "fsad/method/density.hpp"

namespace fsad::method {

/// Stage maps [N, C_i, H_i, W_i] (one device; the first is the finest grid) -> patch features
/// [N, sum C_i, H_0, W_0] on that device: each map average-pooled (pool x pool, stride 1, padding
/// pool/2, padding counted), the others bilinearly resized to the first one's grid, concatenated.
Tensor patch_features(const std::vector<Tensor>& maps, int pool = 3);

/// [N, C, h, w] -> [N*h*w, C] on its device: one row per position (image-major, then row-major
/// positions).
Tensor patch_rows(const Tensor& features);

/// Bilinear upsampling of scores [h, w] to [H, W] (half-pixel centres) followed by a Gaussian
/// blur of `sigma` px with scipy.ndimage.gaussian_filter's defaults ('reflect' borders, radius
/// round(4 sigma)); sigma <= 0 skips the blur. Returns [H, W].
Tensor anomaly_map(const float* scores, int64_t h, int64_t w, int64_t H, int64_t W, double sigma);
/// The same for score grids [n, h, w] on any device -> maps [n, H, W] on that device
/// (ops::resize_bilinear, ops::gaussian_blur).
Tensor anomaly_maps(const Tensor& grids, int64_t H, int64_t W, double sigma);

/// Tiling of views too large to run whole (DetectorConfig::tiles): a view is covered by tiles of
/// th x tw px, each run through the backbone alone, and the tiles' patch features are stitched into
/// one grid. Along each side the view is first padded (edge pixels repeated) to a multiple of
/// kTileAlign; the tiles start at multiples of kTileAlign (so every tapped stage's grid lines up
/// with the view's), the first at 0, the last flush with the padded side, neighbours overlapping by
/// at least `overlap` px. A side no longer than a tile is one tile of the padded side's length.
constexpr int64_t kTileAlign = 32;
struct TileGrid {
    int64_t th = 0, tw = 0;       ///< tile size, px (multiples of kTileAlign)
    std::vector<int64_t> ys, xs;  ///< the tiles' top and left offsets, px; tiles are row-major
    int64_t count() const { return static_cast<int64_t>(ys.size() * xs.size()); }
};
/// requires H, W >= 1, tile a positive multiple of kTileAlign, 0 <= overlap <= tile / 2.
TileGrid plan_tiles(int64_t H, int64_t W, int64_t tile, int64_t overlap);
/// Offsets of tiles `tile` px long along a side of `length` px (see TileGrid).
std::vector<int64_t> tile_offsets(int64_t length, int64_t tile, int64_t overlap);
/// The tiles of a CPU view [3, H, W] in row-major order, each [3, th, tw] (edge-padded).
std::vector<Tensor> cut_tiles(const Tensor& view, const TileGrid& g);
/// The tiles' patch features [T, C, th/s, tw/s] (cut_tiles' order, any device) -> one grid
/// [C, ceil(H/s), ceil(W/s)] on that device: each cell taken from the tile in which it lies
/// farthest from the tile's border (neighbours' overlaps split midway), s = th / grid height.
Tensor stitch_tiles(const Tensor& tile_features, const TileGrid& g, int64_t H, int64_t W);

/// Greedy k-centre coreset (PatchCore): starts from a seeded random row of x [M, C], then
/// repeatedly adds the row farthest (Euclidean) from those chosen. Returns m distinct row
/// indices in the order chosen; m >= M returns every row in order.
std::vector<int64_t> greedy_coreset(const Tensor& x, int64_t m, uint64_t seed);

/// Nearest-neighbour patch scorer.
class PatchKnn {
public:
    /// bank [M, C] (any device; kept on the CPU), all finite, M >= 1.
    void fit(const Tensor& bank);
    /// Euclidean distance of each row of q [P, C] to its nearest bank row -> [P] on q's device
    /// (ops::nearest_distance; a CUDA device gets its copy of the bank on first use).
    /// Thread-safe on a fitted scorer.
    Tensor score(const Tensor& q) const;
    bool fitted() const { return bank_.defined(); }
    const Tensor& bank() const { return bank_; }

private:
    struct OnDevices;              // the bank and its norms per CUDA device, made on first use
    Tensor bank_;                  // [M, C], CPU
    Tensor sqnorm_;                // [M]: |b|^2 per bank row
    std::shared_ptr<OnDevices> on_devices_;
};

}  // namespace fsad::method
