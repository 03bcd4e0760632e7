// Image-level AUROC and the ROC curve, anomalies as the positive class.
#pragma once
#include <vector>

namespace fsad::eval {

/// Area under the ROC curve = P(score of a random anomaly > score of a random normal), ties
/// counted one half (the Mann-Whitney U statistic with average ranks; equals scikit-learn's
/// roc_auc_score). requires labels 0 (normal) / 1 (anomalous), both classes present.
double auroc(const std::vector<float>& scores, const std::vector<int>& labels);

struct RocPoint {
    double fpr, tpr, threshold;  ///< rates when flagging scores >= threshold
};
/// The ROC curve from (0,0) to (1,1), one point per distinct score (descending thresholds).
std::vector<RocPoint> roc_curve(const std::vector<float>& scores, const std::vector<int>& labels);

}  // namespace fsad::eval
