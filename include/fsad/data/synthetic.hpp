// Procedurally generated industrial surfaces with synthetic defects: the embedded dataset of
// `fsad demo` and the test data of the tool's own tests. Each product is a texture family with
// natural variation between parts (phase, grain, lighting, colour); each defect is drawn on a
// normal part. Everything is a pure function of the seed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fsad/core/rng.hpp"
#include "fsad/data/dataset.hpp"

namespace fsad::data {

/// metal (brushed), fabric (woven), wood (grain), stone (speckled tile)
std::vector<std::string> synthetic_products();
/// scratch, hole, stain, crack
std::vector<std::string> synthetic_defects();

/// A normal part of `product`, [3,size,size] in [0,1].
Tensor synthetic_part(const std::string& product, int64_t size, Rng& rng);
/// `part` with `defect` drawn at a random place.
Tensor add_defect(const Tensor& part, const std::string& defect, Rng& rng);

struct SyntheticOptions {
    std::vector<std::string> products;  ///< empty = all
    int64_t size = 128;
    int64_t pool = 20;             ///< normal parts to draw shots from, per product
    int64_t test_normal = 20;      ///< normal test parts per product
    int64_t test_per_defect = 6;   ///< anomalous test parts per product and defect
    uint64_t seed = 0;
};
/// An in-memory dataset, one category per product (pool and labelled test set).
Dataset synthetic_dataset(const SyntheticOptions& opt = {});

/// Writes a dataset's images as PNG files in a layout: "mvtec" (ROOT/<category>/train/good,
/// ROOT/<category>/test/<kind>) or "folder" (ROOT/<category>/good, ROOT/<category>/<defect>).
void write_dataset(const Dataset& ds, const std::string& root, const std::string& layout);

}  // namespace fsad::data
