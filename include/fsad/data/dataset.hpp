// Datasets and their evaluation layouts (METHOD.md "Evaluation"). A dataset is a list of
// categories; each category has a pool of normal images the few shots are drawn from and a
// labelled test set. Images are decoded lazily (materialize), so listing a large dataset is
// cheap, and every loader fails with a message naming the folder or file that is wrong.
//
//   folder        NORMAL_DIR [+ ANOMALOUS_DIR...]: shots from NORMAL_DIR, the rest of it and
//                 the anomalous folders are the test set (one category)
//   mvtec         ROOT/<category>/train/good (pool), ROOT/<category>/test/<good|defect> (test);
//                 the layout of MVTec AD and of anomalib's folder datasets
//   magnetic-tile ROOT/MT_Free/Imgs (pool; the rest of it is tested as normal),
//                 ROOT/MT_<defect>/Imgs (anomalous); *.png masks ignored
//   aitex         ROOT/NODefect_images/**.png, ROOT/Defect_images/*.png, ROOT/Mask_images: 4096x256
//                 images cut into seeded random 256x256 patches (5 per normal image; 1 per defect
//                 image, centred on a defect pixel of its mask; a defect image without a mask
//                 gives a random patch). Without a Mask_images folder the test is image-level:
//                 every fifth normal image and every defect image is scored whole, as the
//                 maximum over its 256x256 tiles, and the shots come from the other normals.
//   cifar10       ROOT/train/<class>, ROOT/test/<class>: each class in turn is normal; test =
//                 its clean test images and their corruptions (data/corruptions.hpp)
//   cifar100      the same over CIFAR-100's 20 superclasses: ROOT/train/<fine class> folders
//                 are grouped by the standard coarse labels (or ROOT/train/<superclass> as is)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fsad/core/tensor.hpp"

namespace fsad::data {

struct Sample {
    std::string name;        ///< file path, or an identifier of a generated image (shown in reports)
    int label = 0;           ///< 0 normal, 1 anomalous
    std::string kind;        ///< "good", the defect class or the corruption
    std::string path;        ///< file to decode; empty when `image` holds the pixels
    Tensor image;            ///< in-memory image [3,H,W] in [0,1] (generated data)
    std::string corruption;  ///< applied after decoding (cifar10); empty = none
    uint64_t seed = 0;       ///< seed of the corruption / patch position
    int64_t crop_size = 0;   ///< > 0: a crop_size x crop_size patch at a seeded position (aitex)
    std::string mask_path;   ///< defect mask (pixel-level AUROC); crop samples are centred on a seeded defect pixel
    int64_t tile = 0;        ///< > 0: image-level sample, scored as the maximum over a grid of tile x tile patches
};

/// A sample read from `path` (name = path).
inline Sample file_sample(const std::string& path, int label = 0, const std::string& kind = "good") {
    Sample s;
    s.name = s.path = path;
    s.label = label;
    s.kind = kind;
    return s;
}

struct Category {
    std::string name;
    std::vector<Sample> pool;  ///< normal images the shots are drawn from
    std::vector<Sample> test;  ///< labelled test images
    bool pool_rest_is_test = false;  ///< the pool images not drawn are tested as normals (magnetic-tile, folder)
};

struct Dataset {
    std::string kind;
    std::string root;
    std::vector<Category> categories;
};

struct LoadOptions {
    std::vector<std::string> categories;   ///< keep only these (empty = all)
    std::vector<std::string> corruptions;  ///< cifar10 (empty = the default nine)
    int64_t test_limit = 0;  ///< cifar10: clean test images per class (0 = all); aitex: patches per image
    uint64_t seed = 0;       ///< corruption noise, aitex patch positions
};

/// Image files (png, jpg, jpeg, bmp, tga, gif, pnm/ppm/pgm, psd, hdr) directly in `dir`, sorted.
std::vector<std::string> list_images(const std::string& dir, bool recursive = false);

Dataset load_folder(const std::string& normal_dir, const std::vector<std::string>& anomalous_dirs);
Dataset load_mvtec(const std::string& root, const LoadOptions& opt = {});
Dataset load_magnetic_tile(const std::string& root);
Dataset load_aitex(const std::string& root, const LoadOptions& opt = {});
Dataset load_cifar10(const std::string& root, const LoadOptions& opt = {});
Dataset load_cifar100(const std::string& root, const LoadOptions& opt = {});
/// CIFAR-100's superclass of a fine class name ("maple_tree" -> "trees"); "" when unknown.
std::string cifar100_superclass(const std::string& fine);
/// kind: folder (root = the normal folder) | mvtec | magnetic-tile | aitex | cifar10 | cifar100
Dataset load_dataset(const std::string& kind, const std::string& root, const LoadOptions& opt = {});
std::vector<std::string> dataset_kinds();

/// A grid of size x size patches covering img [C,H,W] (the last row/column aligned to the edge;
/// one patch of the whole image when it is smaller than `size`).
std::vector<Tensor> tiles(const Tensor& img, int64_t size);

/// The sample's pixels [3,H,W] in [0,1]: decoded (errors name the file), cropped, corrupted.
Tensor materialize(const Sample& s);
/// The sample's defect mask [H, W] (1 = defect pixel: any channel of the mask file non-zero) over
/// the same pixels as materialize(s) (cropped alike); undefined when the sample has no mask file.
Tensor materialize_mask(const Sample& s);
/// Materialises many samples on all threads; the first failure is rethrown.
std::vector<Tensor> materialize(const std::vector<Sample>& samples);

}  // namespace fsad::data
