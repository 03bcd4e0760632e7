// Image-level AUROC and the ROC curve, anomalies as the positive class.
#pragma once
#include <vector>

namespace fsad::eval {

/// Area under the ROC curve = P(score of a random anomaly > score of a random normal), ties
/// counted one half (the Mann-Whitney U statistic with average ranks; equals scikit-learn's
/// roc_auc_score). requires labels 0 (normal) / 1 (anomalous), both classes present.
double auroc(const std::vector<float>& scores, const std::vector<int>& labels);

/// The same from the two classes' scores (e.g. the pixels of many anomaly maps): sorts both and
/// counts by merging, O((n + m) log) with no per-pixel labels. requires both non-empty.
double auroc_pos_neg(std::vector<float> negatives, std::vector<float> positives);

struct RocPoint {
    double fpr, tpr, threshold;  ///< rates when flagging scores >= threshold
};
/// The ROC curve from (0,0) to (1,1), one point per distinct score (descending thresholds).
std::vector<RocPoint> roc_curve(const std::vector<float>& scores, const std::vector<int>& labels);

}  // namespace fsad::eval
