// The few-shot evaluation protocol (METHOD.md "Evaluation"): for every category, shot count and
// seed, draw the shots from the category's normal pool (Python's random.Random(seed).sample over
// the sorted pool, as the reference scripts do), fit a Detector, score the labelled test set and
// compute the image AUROC (anomalies positive). Results keep every score, so reports can plot
// ROC curves and score distributions and pick a gallery.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "fsad/data/dataset.hpp"
#include "fsad/method/detector.hpp"

namespace fsad::eval {

struct ProtocolOptions {
    DetectorConfig detector;   ///< seed is replaced by each run's seed
    std::vector<int> shots{5};
    int seeds = 5;
    int first_seed = 0;
    int64_t score_chunk = 64;  ///< test images decoded and scored per chunk (bounds memory)
    int64_t gallery = 6;       ///< highest-scoring normals and lowest-scoring anomalies kept per category
    int64_t thumbnail = 96;    ///< gallery thumbnail side, px
    /// The imbalanced protocol of the paper's Table 8: per run, test on this many normal images
    /// and this many anomalies drawn (seeded) from the test set; 0 = all.
    int64_t test_normals = 0, test_anomalies = 0;
    /// Decoded (and corrupted) test images are kept across the runs of a category up to this
    /// many bytes, so seeds and shot counts do not decode them again.
    size_t cache_bytes = size_t(2) << 30;
    /// Pixel-level AUROC of the anomaly maps where the test set has masks (patch scorers only).
    bool pixel = true;
    std::function<void(const struct RunResult&)> on_run;  ///< called as each run finishes
};

struct GalleryItem {
    std::string name, kind;
    int label = 0;
    float score = 0;
    std::string png;  ///< encoded thumbnail
    std::string map_png;  ///< the anomaly map over the thumbnail (patch scorers; empty for the global one)
};

struct RunResult {
    std::string category;
    int shots = 0, seed = 0;
    double auroc = 0;            ///< in [0, 1]
    double pixel_auroc = -1;     ///< in [0, 1]; < 0 when not measured (no masks, or no maps)
    double pro = -1;             ///< PRO up to FPR 0.3 (pro_auc), in [0, 1]; < 0 when not measured
    /// Pixel AUROC of each anomaly kind's defect pixels against every normal pixel (those of the
    /// normal images and those outside the masks), in [0, 1]; empty when pixel_auroc is not measured.
    /// The pixel AUROC is these weighted by each kind's defect pixels: a kind with large masks
    /// (Magnetic Tile's Uneven) dominates it.
    std::map<std::string, double> pixel_auroc_by_kind;
    std::string scorer;          ///< the fitted detector's scorer (Scorer::Auto's choice)
    std::string flips;           ///< mirrored shots used: "on" / "off" (Flips::Auto's choice)
    double flip_ratio = 0;       ///< Flips::Auto's measurement (0: not measured)
    int64_t second_view = 0;     ///< PatchConfig::second_view: the second view's resolution, px (0: one view)
    std::string second_flips;    ///< its mirrored shots: "on" / "off"
    double second_flip_ratio = 0;  ///< its Flips::Auto measurement (0: not measured)
    std::vector<Detector::Candidate> selection;  ///< Scorer::Auto's synthetic AUROCs
    int64_t pixel_images = 0;    ///< images in it: the normals and the anomalies with a mask
    double threshold = 0;        ///< the detector's calibrated threshold
    std::vector<float> held_out; ///< the held-out shot scores it was calibrated on (Detector::held_out_scores)
    double fpr = 0, tpr = 0;     ///< at the threshold
    double fit_seconds = 0, score_seconds = 0;
    std::vector<float> scores;
    std::vector<int> labels;
    std::vector<std::string> kinds;  ///< "good" or the anomaly kind, per test image
    std::vector<std::string> names;
    std::vector<GalleryItem> gallery;  ///< only for the first seed of the largest shot count
};

struct Summary {  ///< mean and (population) std of the AUROC in percent over seeds
    std::string category;  ///< "mean" for the average over categories
    int shots = 0;
    double mean = 0, std = 0;
    int runs = 0;
    double pixel_mean = -1, pixel_std = 0;  ///< pixel AUROC in percent; < 0 when not measured
    double pro_mean = -1, pro_std = 0;      ///< PRO (up to FPR 0.3) in percent; < 0 when not measured
    double fpr_mean = 0;  ///< share of the normal test images flagged at the detector's threshold, percent
};

struct EvalResult {
    std::string dataset, root;
    std::vector<RunResult> runs;
    std::vector<Summary> summary() const;  ///< per (category, shots), then "mean" rows
    /// AUROC of the normal test images against each anomaly kind alone (defect type,
    /// corruption), mean/std over all runs of each shot count; `category` holds the kind;
    /// pixel_mean/std from RunResult::pixel_auroc_by_kind where every run measured it.
    std::vector<Summary> by_kind() const;
};

struct ProtocolProgress {
    std::string category, stage;  ///< stage: "fit: fine-tune" ... , "score"
    int shots = 0, seed = 0;
    int64_t run = 0, runs = 0;     ///< run index among all (category, shots, seed)
    int64_t done = 0, total = 0;   ///< within the stage
};

/// Runs the protocol; `progress` is called often (it may throw to abort, e.g. on Ctrl-C).
EvalResult run_protocol(const data::Dataset& ds, const ProtocolOptions& opt,
                        const std::function<void(const ProtocolProgress&)>& progress = {});

/// Decoded images by sample name, up to a byte budget (what does not fit is decoded again).
struct ImageCache {
    size_t budget = 0, used = 0;
    std::map<std::string, Tensor> images;
};

/// Pixel scores of anomaly maps by class, for the pixel-level AUROC: every pixel of a normal
/// image, and the pixels of an anomalous image's map on either side of its mask (resized to the
/// map with nearest neighbours, as the references do). Anomalous images without a mask are left out.
/// Each defect pixel carries its region (8-connected component of the resized mask, numbered
/// across images) for the PRO score.
struct PixelScores {
    std::vector<float> normal, defect;
    std::vector<int32_t> region;  ///< per defect pixel
    int32_t regions = 0;
    std::vector<std::string> kinds;    ///< the anomaly kinds met, in order
    std::vector<int32_t> region_kind;  ///< per region: its image's kind (index into kinds)
    int64_t images = 0;
};

/// Scores samples with a fitted detector in chunks (decode, score, drop); image-level samples
/// (tile > 0) score as the maximum over their tiles. With a cache, decoded images are kept.
/// With `pixels` (patch scorers), the maps of whole-image samples are added to it.
std::vector<float> score_samples(const Detector& det, const std::vector<data::Sample>& samples, int64_t chunk = 64,
                                 const std::function<void(int64_t done, int64_t total)>& progress = {},
                                 ImageCache* cache = nullptr, PixelScores* pixels = nullptr);

}  // namespace fsad::eval
