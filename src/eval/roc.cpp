#include "fsad/eval/roc.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
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
    return auroc_sorted_neg(neg, std::move(pos));
}

double auroc_sorted_neg(const std::vector<float>& neg, std::vector<float> pos) {
    FSAD_CHECK(!neg.empty() && !pos.empty(), "auroc_sorted_neg: both classes need at least one score");
    FSAD_CHECK(std::is_sorted(neg.begin(), neg.end()), "auroc_sorted_neg: the negatives must be sorted ascending");
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

int32_t label_regions(const uint8_t* mask, int64_t h, int64_t w, std::vector<int32_t>& out) {
    FSAD_CHECK(h >= 0 && w >= 0, "label_regions: negative size ", h, "x", w);
    out.assign(static_cast<size_t>(h * w), -1);
    int32_t next = 0;
    std::vector<int64_t> stack;
    for (int64_t start = 0; start < h * w; ++start) {
        if (!mask[start] || out[start] >= 0) continue;
        out[start] = next;  // flood fill, 8 neighbours
        stack.assign(1, start);
        while (!stack.empty()) {
            const int64_t p = stack.back();
            stack.pop_back();
            const int64_t y = p / w, x = p % w;
            for (int64_t dy = -1; dy <= 1; ++dy)
                for (int64_t dx = -1; dx <= 1; ++dx) {
                    const int64_t yy = y + dy, xx = x + dx;
                    if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                    const int64_t q = yy * w + xx;
                    if (mask[q] && out[q] < 0) {
                        out[q] = next;
                        stack.push_back(q);
                    }
                }
        }
        ++next;
    }
    return next;
}

double pro_auc(std::vector<float> normal, const std::vector<float>& defect, const std::vector<int32_t>& region,
               double max_fpr) {
    FSAD_CHECK(!normal.empty() && !defect.empty(), "pro_auc: needs normal and defect pixels (", normal.size(), " normal, ",
               defect.size(), " defect)");
    FSAD_CHECK(region.size() == defect.size(), "pro_auc: ", defect.size(), " defect pixels but ", region.size(),
               " region ids");
    FSAD_CHECK(max_fpr > 0 && max_fpr <= 1, "pro_auc: max_fpr must be in (0, 1], got ", max_fpr);
    int32_t regions = 0;
    for (size_t i = 0; i < region.size(); ++i) {
        FSAD_CHECK(region[i] >= 0, "pro_auc: negative region id at ", i);
        FSAD_CHECK(!std::isnan(defect[i]), "pro_auc: defect score ", i, " is NaN");
        regions = std::max(regions, region[i] + 1);
    }
    std::vector<int64_t> size(static_cast<size_t>(regions), 0);
    for (int32_t r : region) ++size[r];
    const double present = static_cast<double>(std::count_if(size.begin(), size.end(), [](int64_t c) { return c > 0; }));
    // a defect pixel raises PRO by 1 / (its region's size * number of regions) once flagged
    std::vector<std::pair<float, double>> d(defect.size());
    for (size_t i = 0; i < defect.size(); ++i)
        d[i] = {defect[i], 1.0 / (static_cast<double>(size[region[i]]) * present)};
    std::sort(d.begin(), d.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t i = 0; i < normal.size(); ++i) FSAD_CHECK(!std::isnan(normal[i]), "pro_auc: normal score ", i, " is NaN");
    if (std::is_sorted(normal.begin(), normal.end()))  // the caller sorted them ascending (run_protocol)
        std::reverse(normal.begin(), normal.end());
    else
        std::sort(normal.begin(), normal.end(), std::greater<float>());
    const double n_normal = static_cast<double>(normal.size());
    double area = 0, fpr = 0, pro = 0;
    size_t i = 0, j = 0;  // next normal, next defect
    while (i < normal.size() || j < d.size()) {
        // the next threshold: the largest score not yet flagged
        const float t = (j >= d.size() || (i < normal.size() && normal[i] > d[j].first)) ? normal[i] : d[j].first;
        size_t fp = 0;
        while (i < normal.size() && normal[i] == t) ++i, ++fp;
        double gain = 0;
        while (j < d.size() && d[j].first == t) gain += d[j++].second;
        const double fpr1 = fpr + static_cast<double>(fp) / n_normal, pro1 = std::min(1.0, pro + gain);
        if (fpr1 >= max_fpr) {  // cut the last segment at max_fpr
            const double a = fpr1 > fpr ? (max_fpr - fpr) / (fpr1 - fpr) : 0.0;
            area += (max_fpr - fpr) * (pro + 0.5 * a * (pro1 - pro));
            return area / max_fpr;
        }
        area += (fpr1 - fpr) * 0.5 * (pro + pro1);
        fpr = fpr1;
        pro = pro1;
    }
    return area / max_fpr;  // not reached: the last threshold flags every normal pixel (fpr 1)
}

}  // namespace fsad::eval
