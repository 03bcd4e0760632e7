// Image-level AUROC and the ROC curve, anomalies as the positive class.
#pragma once
#include <cstdint>
#include <vector>

namespace fsad::eval {

/// Area under the ROC curve = P(score of a random anomaly > score of a random normal), ties
/// counted one half (the Mann-Whitney U statistic with average ranks; equals scikit-learn's
/// roc_auc_score). requires labels 0 (normal) / 1 (anomalous), both classes present.
double auroc(const std::vector<float>& scores, const std::vector<int>& labels);

/// The same from the two classes' scores (e.g. the pixels of many anomaly maps): sorts both and
/// counts by merging, O((n + m) log) with no per-pixel labels. requires both non-empty.
double auroc_pos_neg(std::vector<float> negatives, std::vector<float> positives);

/// auroc_pos_neg with the negatives already sorted ascending: sort them once, then score many
/// sets of positives against them (e.g. each anomaly kind's pixels). requires both non-empty.
double auroc_sorted_neg(const std::vector<float>& sorted_negatives, std::vector<float> positives);

struct RocPoint {
    double fpr, tpr, threshold;  ///< rates when flagging scores >= threshold
};
/// The ROC curve from (0,0) to (1,1), one point per distinct score (descending thresholds).
std::vector<RocPoint> roc_curve(const std::vector<float>& scores, const std::vector<int>& labels);

}  // namespace fsad::eval

namespace fsad::eval {

/// Connected components of a binary mask (8-connectivity, as scipy.ndimage.label with a 3x3
/// structure, the MVTec AD convention): out[i] = component id (0-based) of pixel i, -1 where
/// mask[i] == 0. Returns the number of components.
int32_t label_regions(const uint8_t* mask, int64_t h, int64_t w, std::vector<int32_t>& out);

/// Area under the per-region-overlap curve up to a false-positive rate of `max_fpr`, divided by
/// max_fpr (the PRO score of MVTec AD, Bergmann et al. 2021). For a threshold t, PRO(t) = the mean
/// over defect regions of the share of the region's pixels with score >= t, FPR(t) = the share of
/// normal pixels with score >= t. `region[i]` is the region of `defect[i]` (0 .. regions-1); every
/// region counts once whatever its size. Exact: every distinct score is a threshold, the curve is
/// piecewise linear between them (trapezoids) and cut at max_fpr by linear interpolation.
/// requires normal and defect non-empty, region.size() == defect.size(), 0 < max_fpr <= 1.
double pro_auc(std::vector<float> normal, const std::vector<float>& defect, const std::vector<int32_t>& region,
               double max_fpr = 0.3);

}  // namespace fsad::eval
