#include "fsad/eval/roc.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "fsad/core/error.hpp"

namespace fsad::eval {
namespace {
void check(const std::vector<float>& s, const std::vector<int>& y, const char* what, int64_t& pos, int64_t& neg) {
    FSAD_CHECK(s.size() == y.size(), what, ": ", s.size(), " scores but ", y.size(), " labels");
    pos = neg = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        FSAD_CHECK(y[i] == 0 || y[i] == 1, what, ": label ", y[i], " at ", i, " is not 0 or 1");
        FSAD_CHECK(!std::isnan(s[i]), what, ": score ", i, " is NaN");
        (y[i] ? pos : neg)++;
    }
    FSAD_CHECK(pos > 0 && neg > 0, what, ": needs both normal and anomalous samples (", neg, " normal, ", pos,
               " anomalous)");
}
}  // namespace

double auroc(const std::vector<float>& scores, const std::vector<int>& labels) {
    int64_t pos, neg;
    check(scores, labels, "auroc", pos, neg);
    std::vector<size_t> idx(scores.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    // sum of the (average) ranks of the positives
    double rank_sum = 0;
    for (size_t i = 0; i < idx.size();) {
        size_t j = i;
        while (j < idx.size() && scores[idx[j]] == scores[idx[i]]) ++j;
        const double avg = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1 .. j
        for (size_t k = i; k < j; ++k)
            if (labels[idx[k]]) rank_sum += avg;
        i = j;
    }
    const double u = rank_sum - static_cast<double>(pos) * static_cast<double>(pos + 1) / 2.0;
    return u / (static_cast<double>(pos) * static_cast<double>(neg));
}

double auroc_pos_neg(std::vector<float> neg, std::vector<float> pos) {
    FSAD_CHECK(!neg.empty() && !pos.empty(), "auroc_pos_neg: both classes need at least one score");
    std::sort(neg.begin(), neg.end());
    std::sort(pos.begin(), pos.end());
    // for each positive: negatives below it count 1, equal ones 1/2 (both sorted: one merge)
    double u = 0;
    size_t lo = 0, hi = 0;
    for (float p : pos) {
        while (lo < neg.size() && neg[lo] < p) ++lo;
        if (hi < lo) hi = lo;
        while (hi < neg.size() && neg[hi] <= p) ++hi;
        u += static_cast<double>(lo) + 0.5 * static_cast<double>(hi - lo);
    }
    return u / (static_cast<double>(pos.size()) * static_cast<double>(neg.size()));
}

std::vector<RocPoint> roc_curve(const std::vector<float>& scores, const std::vector<int>& labels) {
    int64_t pos, neg;
    check(scores, labels, "roc_curve", pos, neg);
    std::vector<size_t> idx(scores.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    std::vector<RocPoint> out{{0.0, 0.0, std::numeric_limits<double>::infinity()}};
    int64_t tp = 0, fp = 0;
    for (size_t i = 0; i < idx.size();) {
        size_t j = i;
        while (j < idx.size() && scores[idx[j]] == scores[idx[i]]) {
            (labels[idx[j]] ? tp : fp)++;
            ++j;
        }
        out.push_back({static_cast<double>(fp) / static_cast<double>(neg), static_cast<double>(tp) / static_cast<double>(pos),
                       static_cast<double>(scores[idx[i]])});
        i = j;
    }
    return out;
}

}  // namespace fsad::eval
