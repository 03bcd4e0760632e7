#include "fsad/eval/protocol.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <cmath>
#include <map>
#include <numeric>

#include "fsad/core/error.hpp"
#include "fsad/detail/py_random.hpp"
#include "fsad/eval/roc.hpp"
#include "fsad/io/image.hpp"

namespace fsad::eval {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
/// Mean and population standard deviation of a non-empty list.
void mean_std(const std::vector<double>& v, double& mean, double& sd) {
    mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    sd = std::sqrt(ss / static_cast<double>(v.size()));
}

}  // namespace

std::vector<float> score_samples(const Detector& det, const std::vector<data::Sample>& samples, int64_t chunk,
                                 const std::function<void(int64_t, int64_t)>& progress, ImageCache* cache,
                                 PixelScores* pixels) {
    FSAD_CHECK(chunk > 0, "score_samples: chunk must be positive");
    const bool maps = pixels && det.config().scorer != Scorer::Global;
    std::vector<float> out;
    out.reserve(samples.size());
    const int64_t n = static_cast<int64_t>(samples.size());
    for (int64_t i = 0; i < n; i += chunk) {
        const int64_t e = std::min(n, i + chunk);
        std::vector<data::Sample> part(samples.begin() + i, samples.begin() + e);
        std::vector<Tensor> imgs(part.size());
        std::vector<data::Sample> missing;
        std::vector<size_t> where;
        for (size_t j = 0; j < part.size(); ++j) {
            const Tensor* hit = nullptr;
            if (cache) {
                auto it = cache->images.find(part[j].name);
                if (it != cache->images.end()) hit = &it->second;
            }
            if (hit) {
                imgs[j] = *hit;
            } else {
                missing.push_back(part[j]);
                where.push_back(j);
            }
        }
        if (!missing.empty()) {
            std::vector<Tensor> dec = data::materialize(missing);
            for (size_t j = 0; j < dec.size(); ++j) {
                imgs[where[j]] = dec[j];
                if (cache && cache->used + dec[j].bytes() <= cache->budget) {
                    cache->images.emplace(missing[j].name, dec[j]);
                    cache->used += dec[j].bytes();
                }
            }
        }
        // image-level samples (tile > 0) are scored as the maximum over their tiles
        std::vector<Tensor> flat;
        std::vector<size_t> owner;
        for (size_t j = 0; j < imgs.size(); ++j) {
            if (part[j].tile <= 0) {
                flat.push_back(imgs[j]);
                owner.push_back(j);
                continue;
            }
            for (const Tensor& t : data::tiles(imgs[j], part[j].tile)) {
                flat.push_back(t);
                owner.push_back(j);
            }
        }
        for (size_t k = 0; k < flat.size(); ++k) {  // an image the detector cannot take: named
            try {
                det.check_image(flat[k]);
            } catch (const Error& err) {
                throw Error(part[owner[k]].name + ": " + err.what());
            }
        }
        Detector::Scored sc = det.score_views(flat, maps);
        const std::vector<float>& s = sc.scores;
        if (maps)
            for (size_t j = 0; j < flat.size(); ++j) {
                const data::Sample& smp = part[owner[j]];
                if (smp.tile > 0) continue;  // scored by tiles: no one map of the image
                const Tensor& m = sc.maps[j];
                const int64_t h = m.dim(0), w = m.dim(1);
                if (smp.label == 0) {
                    pixels->normal.insert(pixels->normal.end(), m.data(), m.data() + m.numel());
                    ++pixels->images;
                    continue;
                }
                const Tensor mask = data::materialize_mask(smp);
                if (!mask.defined()) continue;
                const int64_t H = mask.dim(0), W = mask.dim(1);
                std::vector<uint8_t> in(static_cast<size_t>(h * w));  // the mask at the map's size
                for (int64_t y = 0; y < h; ++y) {
                    const int64_t sy = std::min(H - 1, static_cast<int64_t>((static_cast<double>(y) + 0.5) * static_cast<double>(H) / static_cast<double>(h)));
                    for (int64_t x = 0; x < w; ++x) {
                        const int64_t sx = std::min(W - 1, static_cast<int64_t>((static_cast<double>(x) + 0.5) * static_cast<double>(W) / static_cast<double>(w)));
                        in[y * w + x] = mask.data()[sy * W + sx] > 0.5f;
                    }
                }
                std::vector<int32_t> region;
                const int32_t regions = label_regions(in.data(), h, w, region);
                const auto kind = std::find(pixels->kinds.begin(), pixels->kinds.end(), smp.kind);
                const auto kind_index = static_cast<int32_t>(kind - pixels->kinds.begin());
                if (kind == pixels->kinds.end()) pixels->kinds.push_back(smp.kind);
                pixels->region_kind.insert(pixels->region_kind.end(), static_cast<size_t>(regions), kind_index);
                for (int64_t p = 0; p < h * w; ++p) {
                    if (!in[p]) {
                        pixels->normal.push_back(m.data()[p]);
                        continue;
                    }
                    pixels->defect.push_back(m.data()[p]);
                    pixels->region.push_back(pixels->regions + region[p]);
                }
                pixels->regions += regions;
                ++pixels->images;
            }
        std::vector<float> best(imgs.size(), -std::numeric_limits<float>::infinity());
        for (size_t j = 0; j < s.size(); ++j) best[owner[j]] = std::max(best[owner[j]], s[j]);
        out.insert(out.end(), best.begin(), best.end());
        if (progress) progress(e, n);
    }
    return out;
}

EvalResult run_protocol(const data::Dataset& ds, const ProtocolOptions& opt,
                        const std::function<void(const ProtocolProgress&)>& progress) {
    FSAD_CHECK(!opt.shots.empty() && opt.seeds > 0, "run_protocol: need at least one shot count and one seed");
    EvalResult res;
    res.dataset = ds.kind;
    res.root = ds.root;
    const int max_shots = *std::max_element(opt.shots.begin(), opt.shots.end());
    const int64_t runs = static_cast<int64_t>(ds.categories.size() * opt.shots.size()) * opt.seeds;
    int64_t run = 0;
    for (const auto& cat : ds.categories) {
        ImageCache cache;
        cache.budget = opt.cache_bytes;
        for (int k : opt.shots) {
            FSAD_CHECK(k >= 1, "shots must be at least 1, got ", k);
            const int64_t pool = static_cast<int64_t>(cat.pool.size());
            if (k > pool || (cat.pool_rest_is_test && k >= pool))
                throw Error(ds.root + ": category '" + cat.name + "' has " + std::to_string(pool) +
                            " normal images to draw shots from; " + std::to_string(k) + " shots asked");
            for (int si = 0; si < opt.seeds; ++si, ++run) {
                const int seed = opt.first_seed + si;
                ProtocolProgress pp{cat.name, "", k, seed, run, runs, 0, 0};
                const auto t0 = std::chrono::steady_clock::now();
                std::vector<int64_t> pick = PyRandom(static_cast<uint64_t>(seed)).sample(pool, k);
                std::vector<char> used(static_cast<size_t>(pool), 0);
                std::vector<data::Sample> shots;
                for (int64_t p : pick) {
                    used[static_cast<size_t>(p)] = 1;
                    shots.push_back(cat.pool[static_cast<size_t>(p)]);
                }
                std::vector<data::Sample> test;
                if (cat.pool_rest_is_test)
                    for (int64_t i = 0; i < pool; ++i)
                        if (!used[static_cast<size_t>(i)]) test.push_back(cat.pool[static_cast<size_t>(i)]);
                test.insert(test.end(), cat.test.begin(), cat.test.end());
                if (opt.test_normals > 0 || opt.test_anomalies > 0) {  // Table 8: subsample each class
                    std::vector<data::Sample> normals, anomalies;
                    for (auto& s : test) (s.label ? anomalies : normals).push_back(std::move(s));
                    auto draw = [&](std::vector<data::Sample>& v, int64_t want, uint64_t salt, const char* what) {
                        if (want <= 0) return;
                        if (want > static_cast<int64_t>(v.size()))
                            throw Error(ds.root + ": category '" + cat.name + "' has " + std::to_string(v.size()) + " " +
                                        what + " test images; " + std::to_string(want) + " asked");
                        std::vector<data::Sample> kept;
                        for (int64_t i : PyRandom(static_cast<uint64_t>(seed) * 1000003u + salt).sample(static_cast<int64_t>(v.size()), want))
                            kept.push_back(v[static_cast<size_t>(i)]);
                        v = std::move(kept);
                    };
                    draw(normals, opt.test_normals, 1, "normal");
                    draw(anomalies, opt.test_anomalies, 2, "anomalous");
                    test = std::move(normals);
                    test.insert(test.end(), anomalies.begin(), anomalies.end());
                }
                const bool both = std::any_of(test.begin(), test.end(), [](const auto& s) { return s.label == 0; }) &&
                                  std::any_of(test.begin(), test.end(), [](const auto& s) { return s.label == 1; });
                if (!both)
                    throw Error(ds.root + ": category '" + cat.name +
                                "' needs normal and anomalous test images for an AUROC");

                DetectorConfig cfg = opt.detector;
                cfg.seed = static_cast<uint64_t>(seed);
                Detector det(cfg);
                det.fit(data::materialize(shots), [&](const FitProgress& fp) {
                    if (!progress) return;
                    pp.stage = "fit: " + fp.stage;
                    pp.done = fp.done;
                    pp.total = fp.total;
                    progress(pp);
                });
                RunResult r;
                r.category = cat.name;
                r.shots = k;
                r.seed = seed;
                r.fit_seconds = seconds_since(t0);
                r.scorer = to_string(det.config().scorer);
                r.selection = det.selection();
                r.flips = to_string(det.config().flips);
                r.flip_ratio = det.flip_ratio();
                if (const Detector* s = det.second_view()) {
                    r.second_view = s->config().resolution;
                    r.second_flips = to_string(s->config().flips);
                    r.second_flip_ratio = s->flip_ratio();
                }
                r.held_out = det.held_out_scores();
                const auto t1 = std::chrono::steady_clock::now();
                pp.stage = "score";
                const bool masks = std::any_of(test.begin(), test.end(), [](const auto& s) { return !s.mask_path.empty(); });
                PixelScores pix;
                r.scores = score_samples(
                    det, test, opt.score_chunk,
                    [&](int64_t d, int64_t t) {
                        if (!progress) return;
                        pp.done = d;
                        pp.total = t;
                        progress(pp);
                    },
                    &cache, opt.pixel && masks ? &pix : nullptr);
                r.score_seconds = seconds_since(t1);
                if (!pix.normal.empty() && !pix.defect.empty()) {
                    r.pixel_images = pix.images;
                    std::sort(pix.normal.begin(), pix.normal.end());  // once, for every AUROC below
                    r.pro = pro_auc(pix.normal, pix.defect, pix.region);
                    std::vector<std::vector<float>> by_kind(pix.kinds.size());  // the defect pixels by kind, one pass
                    for (size_t p = 0; p < pix.defect.size(); ++p)
                        by_kind[static_cast<size_t>(pix.region_kind[static_cast<size_t>(pix.region[p])])].push_back(pix.defect[p]);
                    for (size_t kd = 0; kd < by_kind.size(); ++kd)
                        if (!by_kind[kd].empty()) r.pixel_auroc_by_kind[pix.kinds[kd]] = auroc_sorted_neg(pix.normal, std::move(by_kind[kd]));
                    r.pixel_auroc = auroc_sorted_neg(pix.normal, std::move(pix.defect));
                }
                int64_t fp = 0, tp = 0, nn = 0, na = 0;
                for (size_t i = 0; i < test.size(); ++i) {
                    r.labels.push_back(test[i].label);
                    r.kinds.push_back(test[i].kind);
                    r.names.push_back(test[i].name);
                    const bool flag = r.scores[i] > det.threshold();
                    if (test[i].label) {
                        ++na;
                        tp += flag;
                    } else {
                        ++nn;
                        fp += flag;
                    }
                }
                r.auroc = auroc(r.scores, r.labels);
                r.threshold = det.threshold();
                r.fpr = static_cast<double>(fp) / static_cast<double>(nn);
                r.tpr = static_cast<double>(tp) / static_cast<double>(na);
                if (k == max_shots && si == 0 && opt.gallery > 0) {
                    std::vector<size_t> idx(test.size());
                    std::iota(idx.begin(), idx.end(), size_t{0});
                    std::vector<size_t> normals, anomalies;
                    for (size_t i : idx) (test[i].label ? anomalies : normals).push_back(i);
                    std::sort(normals.begin(), normals.end(), [&](size_t a, size_t b) { return r.scores[a] > r.scores[b]; });
                    std::sort(anomalies.begin(), anomalies.end(), [&](size_t a, size_t b) { return r.scores[a] < r.scores[b]; });
                    auto keep = [&](const std::vector<size_t>& v) {
                        for (size_t j = 0; j < v.size() && static_cast<int64_t>(j) < opt.gallery; ++j) {
                            const auto& s = test[v[j]];
                            Tensor img = data::materialize(s);
                            const double sc = static_cast<double>(opt.thumbnail) / static_cast<double>(std::max(img.dim(1), img.dim(2)));
                            const int64_t th = std::max<int64_t>(1, std::lround(static_cast<double>(img.dim(1)) * sc));
                            const int64_t tw = std::max<int64_t>(1, std::lround(static_cast<double>(img.dim(2)) * sc));
                            GalleryItem g{s.name, s.kind, s.label, r.scores[v[j]], io::encode_png(io::resize_antialias(img, th, tw)), {}};
                            if (det.config().scorer != Scorer::Global) {  // the map, coloured from 0.5x to 1.5x the threshold
                                const auto thr = static_cast<float>(det.threshold());
                                const Tensor over = io::heatmap_overlay(img, det.score_map({img})[0], 0.5f * thr, 1.5f * thr);
                                g.map_png = io::encode_png(io::resize_antialias(over, th, tw));
                            }
                            r.gallery.push_back(std::move(g));
                        }
                    };
                    keep(normals);
                    keep(anomalies);
                }
                if (opt.on_run) opt.on_run(r);
                res.runs.push_back(std::move(r));
            }
        }
    }
    return res;
}

std::vector<Summary> EvalResult::by_kind() const {
    std::vector<std::string> kinds;
    std::vector<int> shots;
    for (const auto& r : runs) {
        for (const auto& k : r.kinds)
            if (k != "good" && std::find(kinds.begin(), kinds.end(), k) == kinds.end()) kinds.push_back(k);
        if (std::find(shots.begin(), shots.end(), r.shots) == shots.end()) shots.push_back(r.shots);
    }
    std::sort(kinds.begin(), kinds.end());
    std::sort(shots.begin(), shots.end());
    std::vector<Summary> out;
    for (const auto& kind : kinds)
        for (int k : shots) {
            std::vector<double> v, px;
            for (const auto& r : runs) {
                if (r.shots != k) continue;
                if (auto it = r.pixel_auroc_by_kind.find(kind); it != r.pixel_auroc_by_kind.end()) px.push_back(100.0 * it->second);
                std::vector<float> s;
                std::vector<int> l;
                for (size_t i = 0; i < r.scores.size(); ++i)
                    if (r.labels[i] == 0 || r.kinds[i] == kind) {
                        s.push_back(r.scores[i]);
                        l.push_back(r.labels[i]);
                    }
                const bool both = std::count(l.begin(), l.end(), 1) > 0 && std::count(l.begin(), l.end(), 0) > 0;
                if (both) v.push_back(100.0 * auroc(s, l));
            }
            if (v.empty()) continue;
            Summary su{kind, k};
            su.runs = static_cast<int>(v.size());
            mean_std(v, su.mean, su.std);
            if (px.size() == v.size()) mean_std(px, su.pixel_mean, su.pixel_std);
            out.push_back(su);
        }
    return out;
}

std::vector<Summary> EvalResult::summary() const {
    std::vector<Summary> out;
    std::vector<std::string> cats;
    std::vector<int> shots;
    for (const auto& r : runs) {
        if (std::find(cats.begin(), cats.end(), r.category) == cats.end()) cats.push_back(r.category);
        if (std::find(shots.begin(), shots.end(), r.shots) == shots.end()) shots.push_back(r.shots);
    }
    auto stats = [](const std::vector<double>& v, Summary& s) {
        s.runs = static_cast<int>(v.size());
        if (!v.empty()) mean_std(v, s.mean, s.std);
    };
    for (const auto& c : cats)
        for (int k : shots) {
            std::vector<double> v, px, pro;
            double fpr = 0;
            for (const auto& r : runs)
                if (r.category == c && r.shots == k) {
                    fpr += 100.0 * r.fpr;
                    v.push_back(100.0 * r.auroc);
                    if (r.pixel_auroc >= 0) px.push_back(100.0 * r.pixel_auroc);
                    if (r.pro >= 0) pro.push_back(100.0 * r.pro);
                }
            Summary s{c, k};
            stats(v, s);
            if (!px.empty() && px.size() == v.size()) {
                Summary p;
                stats(px, p);
                s.pixel_mean = p.mean;
                s.pixel_std = p.std;
            }
            if (!pro.empty() && pro.size() == v.size()) {
                Summary p;
                stats(pro, p);
                s.pro_mean = p.mean;
                s.pro_std = p.std;
            }
            if (s.runs) s.fpr_mean = fpr / s.runs;
            if (s.runs) out.push_back(s);
        }
    if (cats.size() > 1)
        for (int k : shots) {
            // mean over categories per seed, then mean/std over seeds (the papers' "mean" row)
            std::map<int, std::vector<double>> per_seed;
            for (const auto& r : runs)
                if (r.shots == k) per_seed[r.seed].push_back(100.0 * r.auroc);
            std::vector<double> v;
            for (auto& [seed, a] : per_seed) v.push_back(std::accumulate(a.begin(), a.end(), 0.0) / static_cast<double>(a.size()));
            Summary s{"mean", k};
            stats(v, s);
            out.push_back(s);
        }
    return out;
}

}  // namespace fsad::eval
