#include "fsad/method/detector.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "fsad/core/parallel.hpp"
#include "fsad/detail/parallel_for.hpp"
#include "fsad/eval/roc.hpp"
#include "fsad/io/image.hpp"
#include "fsad/io/safetensors.hpp"

namespace fsad {
namespace {

using json = nlohmann::json;

// FNV-1a over names, shapes and bytes of the tensors and the metadata that matters.
uint64_t checksum(const std::map<std::string, Tensor>& t, const std::string& meta) {
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&](const void* p, size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ULL;
    };
    mix(meta.data(), meta.size());
    for (const auto& [k, v] : t) {
        mix(k.data(), k.size());
        for (int64_t d : v.shape().vec()) mix(&d, sizeof d);
        std::vector<float> x = v.to_vector();
        mix(x.data(), x.size() * sizeof(float));
    }
    return h;
}

std::shared_ptr<nn::Backbone> build_backbone(const DetectorConfig& c, const std::map<std::string, std::string>* meta) {
    nn::BackboneConfig bc{c.backbone, c.width};
    if (meta) bc.apply_metadata(*meta);
    return nn::make_backbone(bc, c.seed);
}

}  // namespace

namespace {
std::shared_ptr<nn::Backbone> initial_backbone(const DetectorConfig& c) {
    if (!c.weights.empty()) return nn::load_backbone({c.backbone, c.width}, c.weights);
    return nn::make_backbone({c.backbone, c.width}, c.seed);
}
}  // namespace

int64_t auto_resolution(const std::vector<Tensor>& shots) {
    FSAD_CHECK(!shots.empty(), "auto_resolution: no images");
    std::vector<int64_t> shorts;
    for (const Tensor& t : shots) {
        FSAD_CHECK(t.defined() && t.ndim() == 3, "auto_resolution: images must be [3,H,W]");
        shorts.push_back(std::min(t.dim(1), t.dim(2)));
    }
    std::sort(shorts.begin(), shorts.end());
    const size_t m = shorts.size();
    const double median = m % 2 ? static_cast<double>(shorts[m / 2]) : 0.5 * static_cast<double>(shorts[m / 2 - 1] + shorts[m / 2]);
    return median >= 448 ? 448 : 224;
}

Detector::Detector(DetectorConfig cfg) : Detector(cfg, initial_backbone(cfg)) {}

Detector::Detector(DetectorConfig cfg, std::shared_ptr<nn::Backbone> backbone)
    : cfg_(std::move(cfg)), backbone_(std::move(backbone)) {
    FSAD_CHECK(cfg_.resolution == 0 || (cfg_.resolution >= 32 && cfg_.resolution <= 4096),
               "Detector: resolution must be 0 (auto) or lie in [32, 4096], got ", cfg_.resolution);
    auto_resolution_ = cfg_.resolution == 0;
    FSAD_CHECK(cfg_.n_augment >= 0, "Detector: n_augment must be 0 or more");
    FSAD_CHECK(cfg_.max_aspect >= 1 && cfg_.max_aspect <= 64, "Detector: max_aspect must lie in [1, 64], got ",
               cfg_.max_aspect);
    // the shots view (set by fit; a model file's): both sides or neither, within the aspect bound
    FSAD_CHECK(cfg_.view_h >= 0 && cfg_.view_w >= 0 && (cfg_.view_h > 0) == (cfg_.view_w > 0) &&
                   static_cast<double>(std::max(cfg_.view_h, cfg_.view_w)) <=
                       static_cast<double>(cfg_.resolution) * cfg_.max_aspect + 16 &&
                   cfg_.view_h * cfg_.view_w <= (int64_t{1} << 26),
               "Detector: the shots view ", cfg_.view_h, " x ", cfg_.view_w, " does not fit resolution ",
               cfg_.resolution, " and max_aspect ", cfg_.max_aspect);
    FSAD_CHECK(cfg_.patch.coreset > 0 && cfg_.patch.coreset <= 1, "Detector: patch.coreset must lie in (0, 1], got ",
               cfg_.patch.coreset);
    FSAD_CHECK(cfg_.patch.max_bank >= 1, "Detector: patch.max_bank must be positive");
    FSAD_CHECK(cfg_.patch.map_sigma >= 0 && cfg_.patch.map_sigma <= 256, "Detector: patch.map_sigma must lie in [0, 256], got ",
               cfg_.patch.map_sigma);
    for (int64_t st : cfg_.patch.stages)
        FSAD_CHECK(st >= 0 && st < backbone_->num_stages(), "Detector: patch stage ", st, " out of range [0, ",
                   backbone_->num_stages() - 1, "]");
    FSAD_CHECK(cfg_.view == View::Squash || cfg_.resize_short == 0,
               "Detector: resize_short (centre crop) applies to the squash view only");
    FSAD_CHECK(cfg_.resize_short == 0 || (cfg_.resolution > 0 && cfg_.resize_short >= cfg_.resolution && cfg_.resize_short <= 8192),
               "Detector: resize_short must be 0 or lie in [resolution, 8192] (with a resolution given, not auto), got ",
               cfg_.resize_short);
    FSAD_CHECK(cfg_.tiles == 0 || cfg_.tiles == -1 ||
                   (cfg_.tiles >= 2 * method::kTileAlign && cfg_.tiles <= 4096 && cfg_.tiles % method::kTileAlign == 0),
               "Detector: tiles must be 0 (auto), -1 (off) or a multiple of ", method::kTileAlign, " in [",
               2 * method::kTileAlign, ", 4096] px, got ", cfg_.tiles);
    FSAD_CHECK(cfg_.patch.tile_overlap >= 0 && cfg_.patch.tile_overlap <= 0.5,
               "Detector: patch.tile_overlap must lie in [0, 0.5], got ", cfg_.patch.tile_overlap);
    FSAD_CHECK(cfg_.patch.second_view == 0 || (cfg_.patch.second_view >= 0.125 && cfg_.patch.second_view <= 4),
               "Detector: patch.second_view must be 0 (one view) or lie in [0.125, 4], got ", cfg_.patch.second_view);
    FSAD_CHECK(cfg_.threshold_quantile > 0 && cfg_.threshold_quantile <= 1, "Detector: threshold_quantile in (0, 1]");
    FSAD_CHECK(cfg_.spread_prior >= 0 && cfg_.spread_prior <= 10 && cfg_.spread_prior_weight >= 0 &&
                   cfg_.spread_prior_weight <= 1e6,
               "Detector: spread_prior must lie in [0, 10] and spread_prior_weight in [0, 1e6], got ", cfg_.spread_prior,
               " and ", cfg_.spread_prior_weight);
    if (cfg_.threads > 0) set_num_threads(cfg_.threads);
    cfg_.byol.augment.size = cfg_.resolution;
    cfg_.byol.seed = cfg_.seed;
    cfg_.byol.device = cfg_.device;
    backbone_->to(cfg_.device);
}

std::pair<int64_t, int64_t> Detector::view_size(int64_t H, int64_t W) const {
    const int64_t r = cfg_.resolution;
    FSAD_CHECK(r > 0, "Detector: the working resolution (auto) is chosen by fit");
    switch (cfg_.view) {
        case View::Shots:
            FSAD_CHECK(cfg_.view_h > 0 && cfg_.view_w > 0, "Detector: the shots view's size is set by fit");
            return {cfg_.view_h, cfg_.view_w};
        case View::Native: return {H, W};
        case View::Keep: {
            const double aspect = std::min(cfg_.max_aspect, static_cast<double>(std::max(H, W)) / static_cast<double>(std::min(H, W)));
            const int64_t along = std::max<int64_t>(r, std::lround(static_cast<double>(r) * aspect));
            return {H <= W ? r : along, H <= W ? along : r};
        }
        case View::Squash: break;
    }
    return {r, r};
}

Tensor Detector::view_of(const Tensor& img) const {
    FSAD_CHECK(img.defined() && img.ndim() == 3 && img.dim(0) == 3 && img.dim(1) > 0 && img.dim(2) > 0,
               "Detector: not an RGB image [3,H,W]");
    const int64_t H = img.dim(1), W = img.dim(2);
    const auto [h, w] = view_size(H, W);
    // already at the view's size: used as it is (only read from here on)
    if (cfg_.resize_short > 0) return io::resize_short_center_crop(img, cfg_.resize_short, h, w);
    if (h == H && w == W) return img;
    return io::resize_antialias(img, h, w);
}

void Detector::check_image(const Tensor& img) const {
    FSAD_CHECK(img.defined() && img.ndim() == 3 && img.dim(0) == 3 && img.dim(1) > 0 && img.dim(2) > 0,
               "Detector: not an RGB image [3,H,W]");
    if (cfg_.scorer == Scorer::Global || cfg_.scorer == Scorer::Auto) return;  // views run whole
    const auto [h, w] = view_size(img.dim(1), img.dim(2));
    (void)tile_of(h, w);
    if (second_) second_->check_image(img);
}

int64_t Detector::tile_of(int64_t h, int64_t w) const {
    if (cfg_.tiles < 0) return 0;
    const int64_t t = cfg_.tiles > 0 ? cfg_.tiles
                                     : std::max(2 * method::kTileAlign, cfg_.resolution / method::kTileAlign * method::kTileAlign);
    FSAD_CHECK((cfg_.tiles == 0 && cfg_.view != View::Native) || std::min(h, w) >= t, "the view is ", h, " x ", w,
               " px, smaller than a tile (", t, " px): lower the tile size (--tiles), or use --tiles off or another --view");
    if (cfg_.tiles > 0) return h <= t && w <= t ? 0 : t;
    return h * w > DetectorConfig::kAutoTileArea * t * t ? t : 0;
}

void Detector::check_tiles(const Tensor& view, const char* where, size_t i) const {
    try {
        (void)tile_of(view.dim(1), view.dim(2));
    } catch (const Error& e) {
        throw Error(where + std::to_string(i) + ": " + e.what());
    }
}

namespace {
// t itself on the CPU (no copy), else its copy there
Tensor on_host(const Tensor& t) { return t.is_cuda() ? t.to(Device::cpu()) : t; }

// Batches of same-sized views (views of other sizes go in other batches), in order of first size.
std::vector<std::vector<size_t>> batches_by_size(const std::vector<Tensor>& views, size_t bs) {
    std::vector<std::pair<std::vector<int64_t>, std::vector<size_t>>> groups;
    for (size_t i = 0; i < views.size(); ++i) {
        const std::vector<int64_t> s = views[i].shape().vec();
        auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == s; });
        if (it == groups.end()) groups.push_back({s, {i}});
        else it->second.push_back(i);
    }
    std::vector<std::vector<size_t>> out;
    for (auto& [shape, idx] : groups)
        for (size_t b = 0; b < idx.size(); b += bs)
            out.emplace_back(idx.begin() + static_cast<std::ptrdiff_t>(b), idx.begin() + static_cast<std::ptrdiff_t>(std::min(idx.size(), b + bs)));
    return out;
}

// count images made on all threads, image i by make(i, rng) with its own Rng seeded by the i-th
// draw from `seed`: the same images whatever the thread count
template <class Make>
std::vector<Tensor> seeded_images(int64_t count, uint64_t seed, const Make& make) {
    std::vector<Tensor> out(static_cast<size_t>(count));
    Rng seeder(seed);
    std::vector<uint64_t> seeds(out.size());
    for (auto& s : seeds) s = seeder.engine()();
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < count; ++i) {
        Rng r(seeds[static_cast<size_t>(i)]);
        out[static_cast<size_t>(i)] = make(i, r);
    }
    return out;
}

std::vector<Tensor> pick(const std::vector<Tensor>& v, const std::vector<size_t>& idx) {
    std::vector<Tensor> out;
    for (size_t i : idx) out.push_back(v[i]);
    return out;
}
}  // namespace

Tensor Detector::features(const std::vector<Tensor>& prepared, const std::function<void(int64_t)>& done) const {
    NoGradGuard ng;
    std::vector<Tensor> rows(prepared.size());
    const size_t bs = cfg_.device.is_cuda() ? 256 : 32;  // a GPU wants big batches; the CPU, cache-sized ones
    int64_t count = 0;
    for (const auto& idx : batches_by_size(prepared, bs)) {
        const Tensor f = backbone_->forward(Var(method::normalized_batch(pick(prepared, idx)).to(cfg_.device))).value();
        for (size_t j = 0; j < idx.size(); ++j) rows[idx[j]] = f.slice(static_cast<int64_t>(j), static_cast<int64_t>(j) + 1);
        count += static_cast<int64_t>(idx.size());
        if (done) done(count);
    }
    return ops::concat(rows, 0);
}

std::vector<Tensor> Detector::patch_maps(const std::vector<Tensor>& prepared, const std::function<void(int64_t)>& done) const {
    std::vector<Tensor> out(prepared.size());
    int64_t count = 0;
    patch_batches(prepared, [&](const std::vector<size_t>& idx, const Tensor& f) {
        const Tensor host = on_host(f);
        for (size_t j = 0; j < idx.size(); ++j) out[idx[j]] = host[static_cast<int64_t>(j)];
        count += static_cast<int64_t>(idx.size());
        if (done) done(count);
    });
    return out;
}

void Detector::patch_score(const std::vector<Tensor>& prepared, Scored& out, bool want_maps) const {
    out.scores.resize(prepared.size());
    if (want_maps) out.maps.resize(prepared.size());
    patch_batches(prepared, [&](const std::vector<size_t>& idx, const Tensor& f) {
        const int64_t n = f.dim(0), H = prepared[idx[0]].dim(1), W = prepared[idx[0]].dim(2);  // one view size per batch
        const Tensor rows = method::patch_rows(f);
        const Tensor patch_scores =
            cfg_.scorer == Scorer::PatchKnn ? knn_.score(rows)
            : cfg_.scorer == Scorer::PatchGauss
                ? patch_density_.score(rows)
                : ops::axpby(static_cast<float>(1 / patch_scale_[0]), patch_density_.score(rows),
                             static_cast<float>(1 / patch_scale_[1]), knn_.score(rows));
        const Tensor grids = patch_scores.reshape(Shape{n, f.dim(2), f.dim(3)});
        const Tensor maps = method::anomaly_maps(grids, H, W, cfg_.patch.map_sigma);
        const Tensor best = on_host(ops::row_max(maps.reshape(Shape{n, H * W})));
        const Tensor host = want_maps ? on_host(maps) : Tensor();
        for (size_t j = 0; j < idx.size(); ++j) {
            out.scores[idx[j]] = best.data()[j];
            if (want_maps) out.maps[idx[j]] = host[static_cast<int64_t>(j)];
        }
    });
}

void Detector::patch_batches(const std::vector<Tensor>& prepared,
                             const std::function<void(const std::vector<size_t>&, const Tensor&)>& each) const {
    NoGradGuard ng;
    const std::vector<int64_t> stages = cfg_.patch.stages.empty() ? backbone_->patch_stages() : cfg_.patch.stages;
    const int64_t last = *std::max_element(stages.begin(), stages.end());
    const size_t bs = cfg_.device.is_cuda() ? 256 : 16;
    const auto run = [&](const std::vector<Tensor>& views) {  // same-sized views -> [n, C, h, w]
        const std::vector<Var> maps = backbone_->forward_stages(Var(method::normalized_batch(views).to(cfg_.device)), last);
        std::vector<Tensor> taps;
        for (int64_t s : stages) taps.push_back(maps[static_cast<size_t>(s)].value());
        return method::patch_features(taps);
    };
    std::vector<size_t> whole, tiled;  // indices into prepared
    for (size_t i = 0; i < prepared.size(); ++i)
        (tile_of(prepared[i].dim(1), prepared[i].dim(2)) > 0 ? tiled : whole).push_back(i);
    // whole views in batches of about bs squares of the resolution's pixels (large views, fewer)
    const double square = static_cast<double>(cfg_.resolution) * static_cast<double>(cfg_.resolution);
    for (const auto& b : batches_by_size(pick(prepared, whole), prepared.size())) {  // one group per size
        const Tensor& v0 = prepared[whole[b[0]]];
        const double area = static_cast<double>(v0.dim(1)) * static_cast<double>(v0.dim(2));
        const size_t per = std::clamp<size_t>(static_cast<size_t>(static_cast<double>(bs) * square / area), 1, bs);
        for (size_t k = 0; k < b.size(); k += per) {
            std::vector<size_t> idx;
            for (size_t j = k; j < std::min(b.size(), k + per); ++j) idx.push_back(whole[b[j]]);
            each(idx, run(pick(prepared, idx)));
        }
    }
    if (tiled.empty()) return;
    // tiled views: views of one size share their tiling; their tiles go through the backbone bs at
    // a time, and each view's tiles' features are stitched into its grid
    const std::vector<Tensor> large = pick(prepared, tiled);
    for (const auto& g : batches_by_size(large, large.size())) {  // one group per size
        const Tensor& v0 = large[g[0]];
        const int64_t t = tile_of(v0.dim(1), v0.dim(2));
        const int64_t overlap = std::min(t - method::kTileAlign, static_cast<int64_t>(std::ceil(cfg_.patch.tile_overlap * static_cast<double>(t))));
        const method::TileGrid grid = method::plan_tiles(v0.dim(1), v0.dim(2), t, overlap);
        const size_t per = std::max<size_t>(1, bs / static_cast<size_t>(grid.count()));
        for (size_t k = 0; k < g.size(); k += per) {
            std::vector<size_t> idx;
            std::vector<Tensor> tiles;
            for (size_t j = k; j < std::min(g.size(), k + per); ++j) {
                idx.push_back(tiled[g[j]]);
                for (Tensor& tile : method::cut_tiles(large[g[j]], grid)) tiles.push_back(std::move(tile));
            }
            std::vector<Tensor> feats;
            for (size_t c = 0; c < tiles.size(); c += bs)
                feats.push_back(run(std::vector<Tensor>(tiles.begin() + static_cast<std::ptrdiff_t>(c),
                                                        tiles.begin() + static_cast<std::ptrdiff_t>(std::min(tiles.size(), c + bs)))));
            const Tensor all = feats.size() == 1 ? feats[0] : ops::concat(feats, 0);
            std::vector<Tensor> grids;
            for (size_t j = 0; j < idx.size(); ++j) {
                const int64_t T = grid.count(), at = static_cast<int64_t>(j) * T;
                const Tensor one = method::stitch_tiles(all.slice(at, at + T), grid, v0.dim(1), v0.dim(2));
                grids.push_back(one.reshape(Shape{1, one.dim(0), one.dim(1), one.dim(2)}));
            }
            each(idx, grids.size() == 1 ? grids[0] : ops::concat(grids, 0));
        }
    }
}

void Detector::fit(const std::vector<Tensor>& normal, const std::function<void(const FitProgress&)>& progress) {
    FSAD_CHECK(!normal.empty(), "Detector::fit: no normal images given (need at least one)");
    for (size_t i = 0; i < normal.size(); ++i)
        FSAD_CHECK(normal[i].defined() && normal[i].ndim() == 3 && normal[i].dim(0) == 3 && normal[i].dim(1) > 0 &&
                       normal[i].dim(2) > 0,
                   "Detector::fit: image ", i, " is not an RGB image [3,H,W]");
    const bool patch = cfg_.scorer != Scorer::Global;
    FSAD_CHECK(!patch || normal.size() >= 2, "Detector::fit: the ", to_string(cfg_.scorer),
               " scorer needs at least 2 normal images (its threshold is calibrated by leaving each one out), got ",
               normal.size());
    held_out_.clear();
    second_.reset();
    view_scale_ = {0, 0};
    const DetectorConfig requested = cfg_;  // the second view starts from it (Auto still auto)
    if (auto_resolution_) cfg_.resolution = auto_resolution(normal);  // a refit chooses again
    cfg_.byol.augment.size = cfg_.resolution;
    if (cfg_.adapt && cfg_.byol.steps > 0) {
        const nn::BackboneConfig bc = backbone_->config();
        method::ByolTrainer tr(backbone_, [&] { return nn::make_backbone(bc, cfg_.seed + 1); }, cfg_.byol);
        tr.fit(normal, [&](const method::StepStats& s) {
            if (progress) progress({"fine-tune", s.step + 1, cfg_.byol.steps, s.loss});
        });
    }
    backbone_->eval();
    backbone_->prepare_inference();  // the weights are final: packed once for every image scored
    const int64_t n = static_cast<int64_t>(normal.size()), A = cfg_.n_augment;
    if (cfg_.view == View::Shots) {  // one view size for every image: the shots' median aspect ratio
        std::vector<double> logs;
        for (const Tensor& t : normal) logs.push_back(std::log(static_cast<double>(t.dim(2)) / static_cast<double>(t.dim(1))));
        std::sort(logs.begin(), logs.end());
        const size_t m = logs.size();
        const double a = std::exp(m % 2 ? logs[m / 2] : 0.5 * (logs[m / 2 - 1] + logs[m / 2]));  // width / height
        const double along = std::min(cfg_.max_aspect, std::max(a, 1 / a));
        const int64_t r = cfg_.resolution;
        const int64_t l = along < 1.2 ? r : std::max<int64_t>(r, 16 * std::lround(static_cast<double>(r) * along / 16.0));
        cfg_.view_h = a >= 1 ? r : l;
        cfg_.view_w = a >= 1 ? l : r;
    }
    // the shots as test images are seen (the same view), and N_A augmented copies of each (regular
    // t: in the squash view square crops at the resolution as the paper draws them; in the keep
    // view crops of the view's own shape and size)
    std::vector<Tensor> views(normal.size());
    parallel_for_each(static_cast<int64_t>(normal.size()),
                      [&](int64_t i) { views[static_cast<size_t>(i)] = view_of(normal[static_cast<size_t>(i)]); });
    const std::vector<Tensor> copies = seeded_images(n * A, cfg_.seed ^ 0x5deece66dULL, [&](int64_t i, Rng& r) {
        const size_t shot = static_cast<size_t>(i / A);
        if (cfg_.view == View::Squash) return method::augment(normal[shot], cfg_.byol.augment, r);
        method::AugmentOptions o = cfg_.byol.augment;
        o.out_h = views[shot].dim(1);
        o.out_w = views[shot].dim(2);
        return method::augment(views[shot], o, r);
    });
    if (patch) {
        for (size_t i = 0; i < views.size(); ++i) check_tiles(views[i], "Detector::fit: image ", i);
        fit_patch(views, copies, progress);
        if (cfg_.patch.second_view > 0 && cfg_.scorer != Scorer::Global && cfg_.view != View::Native &&
            second_resolution() != cfg_.resolution)
            fit_second_view(normal, requested, progress);
        else
            cfg_.patch.second_view = 0;  // one view (the model file says so)
        return;
    }
    cfg_.patch.second_view = 0;
    // the paper's global Gaussian: fitted on the copies (or, with N_A = 0, on the shots' views)
    const std::vector<Tensor>& sample = A > 0 ? copies : views;
    const int64_t per = std::max<int64_t>(A, 1), total = n * per;
    if (progress) progress({"features", 0, total, 0});
    // the fit (and its leave-one-shot-out threshold) runs on the CPU: few samples, low-rank form
    Tensor f = features(sample, [&](int64_t d) {
                   if (progress) progress({"features", d, total, 0});
               }).to(Device::cpu());
    if (progress) progress({"density", 0, 1, 0});
    density_.fit(f, cfg_.density);
    if (progress) progress({"density", 1, 1, 0});
    std::vector<Tensor> rows;
    for (int64_t i = 0; i < total; ++i) rows.push_back(f.slice(i, i + 1));
    if (progress) progress({"threshold", 0, 1, 0});
    threshold_ = calibrate_threshold(rows, n, per, cfg_.density, cfg_.threshold_quantile);
    if (progress) progress({"threshold", 1, 1, 0});
}

namespace {
// t with P(T <= t) = q for Student's t with nu degrees of freedom (q >= 1/2): bisection on the
// CDF, 1/2 + the density's integral from 0 to t by composite Simpson (the density is smooth and
// bounded; 4096 panels on [0, t] are exact to ~1e-12 for the quantiles used here)
double student_t_quantile(double q, double nu) {
    const double c = std::exp(std::lgamma(0.5 * (nu + 1)) - std::lgamma(0.5 * nu)) / std::sqrt(nu * 3.14159265358979323846);
    auto pdf = [&](double x) { return c * std::pow(1 + x * x / nu, -0.5 * (nu + 1)); };
    auto cdf = [&](double t) {
        constexpr int panels = 4096;
        const double h = t / panels;
        double acc = pdf(0) + pdf(t);
        for (int i = 1; i < panels; ++i) acc += (i % 2 ? 4 : 2) * pdf(i * h);
        return 0.5 + acc * h / 3;
    };
    double lo = 0, hi = 1;
    while (cdf(hi) < q && hi < 1e7) hi *= 2;
    for (int i = 0; i < 100 && hi - lo > 1e-12 * hi; ++i) {
        const double mid = 0.5 * (lo + hi);
        (cdf(mid) < q ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

}  // namespace

double prediction_bound(const std::vector<float>& v, double q, double prior_spread, double prior_weight) {
    FSAD_CHECK(v.size() >= 2, "prediction_bound: need at least 2 scores, got ", v.size());
    FSAD_CHECK(q > 0 && q < 1, "prediction_bound: q must lie in (0, 1), got ", q);
    FSAD_CHECK(prior_spread >= 0 && prior_weight >= 0 && std::isfinite(prior_spread) && std::isfinite(prior_weight),
               "prediction_bound: the spread prior must be finite and non-negative");
    const double n = static_cast<double>(v.size());
    double m = 0, ss = 0;
    for (float x : v) m += std::log(std::max(static_cast<double>(x), 1e-30));
    m /= n;
    for (float x : v) ss += std::pow(std::log(std::max(static_cast<double>(x), 1e-30)) - m, 2);
    // the deviation: the scores' own (n - 1 degrees of freedom) pooled with the prior's pseudo-samples
    const double nu = n - 1 + prior_weight;
    const double sd = std::sqrt((ss + prior_weight * prior_spread * prior_spread) / nu);
    // Student's t (nu degrees of freedom): the mean and the deviation are both estimates
    const double t = q >= 0.5 ? student_t_quantile(q, nu) : -student_t_quantile(1 - q, nu);
    return std::exp(m + t * sd * std::sqrt(1 + 1 / n));
}

void Detector::fit_patch(const std::vector<Tensor>& views, const std::vector<Tensor>& copies,
                         const std::function<void(const FitProgress&)>& progress) {
    const int64_t n = static_cast<int64_t>(views.size()), A = cfg_.n_augment;
    const bool select = cfg_.scorer == Scorer::Auto;
    // Auto: K synthetic defects pasted into each shot's view (method::synthetic_defect)
    constexpr int64_t K = 4;
    // with the global scorer among the candidates, two of every shot's K defects corrupt the whole
    // image (noise; blur with brightness and contrast shifts) instead of a spot
    const bool with_global = select && cfg_.auto_global;
    const std::vector<Tensor> defects = seeded_images(select ? n * K : 0, cfg_.seed ^ 0xdefec7ULL, [&](int64_t i, Rng& r) {
        const Tensor& v = views[static_cast<size_t>(i / K)];
        return with_global && i % K >= K - 2 ? method::synthetic_corruption(v, r) : method::synthetic_defect(v, r);
    });
    // Flips: every shot's view mirrored horizontally, vertically and both ways
    constexpr int64_t F = 3;
    const bool flips = cfg_.flips != Flips::Off;
    std::vector<Tensor> mirrored;
    if (flips)
        for (const Tensor& v : views) {
            const Tensor h = method::flip(v, true);
            mirrored.push_back(h);
            mirrored.push_back(method::flip(v, false));
            mirrored.push_back(method::flip(h, false));
        }
    const int64_t total = n * (1 + A) + static_cast<int64_t>(defects.size() + mirrored.size());
    if (progress) progress({"features", 0, total, 0});
    const std::vector<Tensor> fv = patch_maps(views, [&](int64_t d) {
        if (progress) progress({"features", d, total, 0});
    });
    const std::vector<Tensor> fc = patch_maps(copies, [&](int64_t d) {
        if (progress) progress({"features", n + d, total, 0});
    });
    const std::vector<Tensor> fd = patch_maps(defects, [&](int64_t d) {
        if (progress) progress({"features", n * (1 + A) + d, total, 0});
    });
    const std::vector<Tensor> fm = patch_maps(mirrored, [&](int64_t d) {
        if (progress) progress({"features", n * (1 + A) + static_cast<int64_t>(defects.size()) + d, total, 0});
    });
    auto rows_of = [](const Tensor& m) { return method::patch_rows(m.reshape(Shape{1, m.dim(0), m.dim(1), m.dim(2)})); };
    // every patch of shot i (its view and its copies), as rows
    std::vector<Tensor> shot_rows(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        std::vector<Tensor> r{rows_of(fv[static_cast<size_t>(i)])};
        for (int64_t a = 0; a < A; ++a) r.push_back(rows_of(fc[static_cast<size_t>(i * A + a)]));
        shot_rows[static_cast<size_t>(i)] = ops::concat(r, 0);
    }
    method::GaussianOptions gopt = cfg_.density;
    gopt.l2_normalize = false;  // patch features keep their lengths (as the references)
    // a view's patch scores (row-major over its feature map's grid) under the patch Gaussian or the kNN
    auto grid_of = [&](Scorer sc, const method::GaussianDensity& g, const method::PatchKnn& k, const Tensor& fmap) {
        return sc == Scorer::PatchKnn ? k.score(rows_of(fmap)) : g.score(rows_of(fmap));
    };
    // image score of a view from its patch scores: the maximum of the smoothed anomaly map
    auto map_max = [&](const Tensor& grid, const Tensor& fmap, const Tensor& view) {
        const Tensor map = method::anomaly_map(grid.data(), fmap.dim(1), fmap.dim(2), view.dim(1), view.dim(2), cfg_.patch.map_sigma);
        return *std::max_element(map.data(), map.data() + map.numel());
    };
    auto image_score = [&](Scorer sc, const method::GaussianDensity& g, const method::PatchKnn& k, const Tensor& fmap,
                           const Tensor& view) { return map_max(grid_of(sc, g, k, fmap), fmap, view); };
    flip_ratio_ = 0;
    if (flips && cfg_.flips == Flips::Auto) {
        // does the product look the same mirrored? each held-out shot's mirror images against a
        // patch Gaussian of the other shots, relative to the shot itself
        std::vector<double> ratio;
        for (int64_t i = 0; i < n && n > 1; ++i) {
            std::vector<Tensor> r;
            for (int64_t j = 0; j < n; ++j)
                if (j != i) r.push_back(shot_rows[static_cast<size_t>(j)]);
            method::GaussianDensity g;
            g.fit(ops::concat(r, 0), gopt);
            const method::PatchKnn none;
            const double own = image_score(Scorer::PatchGauss, g, none, fv[static_cast<size_t>(i)], views[static_cast<size_t>(i)]);
            double m = 0;
            for (int64_t f = 0; f < F; ++f)
                m += image_score(Scorer::PatchGauss, g, none, fm[static_cast<size_t>(i * F + f)], mirrored[static_cast<size_t>(i * F + f)]);
            ratio.push_back(m / F / std::max(own, 1e-30));
        }
        std::sort(ratio.begin(), ratio.end());
        const size_t h = ratio.size();
        flip_ratio_ = h == 0 ? 0.0 : h % 2 ? ratio[h / 2] : 0.5 * (ratio[h / 2 - 1] + ratio[h / 2]);
        cfg_.flips = h > 0 && flip_ratio_ <= cfg_.patch.flip_ratio ? Flips::On : Flips::Off;
    }
    if (cfg_.flips == Flips::On)  // the mirror images join their shot's patches
        for (int64_t i = 0; i < n; ++i) {
            std::vector<Tensor> r{shot_rows[static_cast<size_t>(i)]};
            for (int64_t f = 0; f < F; ++f) r.push_back(rows_of(fm[static_cast<size_t>(i * F + f)]));
            shot_rows[static_cast<size_t>(i)] = ops::concat(r, 0);
        }
    // fits scorer `sc` on the rows of the shots in `use` into (density, knn)
    // patch-knn's coreset is selected once over all shots' patches; the bank without shot i is
    // that coreset less shot i's patches (selecting a coreset per held-out shot costs n times as
    // much: 80 s at 50 shots)
    std::vector<int64_t> owner;
    for (int64_t i = 0; i < n; ++i) owner.insert(owner.end(), static_cast<size_t>(shot_rows[static_cast<size_t>(i)].dim(0)), i);
    const Tensor all_rows = ops::concat(shot_rows, 0);
    std::vector<int64_t> core;
    auto coreset = [&]() -> const std::vector<int64_t>& {
        if (core.empty()) {
            const int64_t M = all_rows.dim(0);
            const int64_t m = std::min<int64_t>(
                cfg_.patch.max_bank, std::max<int64_t>(1, static_cast<int64_t>(std::ceil(cfg_.patch.coreset * static_cast<double>(M)))));
            core = method::greedy_coreset(all_rows, m, cfg_.seed);
        }
        return core;
    };
    auto fit_on = [&](Scorer sc, const std::vector<int64_t>& use, method::GaussianDensity& g, method::PatchKnn& k) {
        if (sc == Scorer::PatchGauss) {
            std::vector<Tensor> r;
            for (int64_t i : use) r.push_back(shot_rows[static_cast<size_t>(i)]);
            g.fit(ops::concat(r, 0), gopt);
            return;
        }
        std::vector<char> in(static_cast<size_t>(n), 0);
        for (int64_t i : use) in[static_cast<size_t>(i)] = 1;
        std::vector<int64_t> bank;
        for (int64_t r : coreset())
            if (in[static_cast<size_t>(owner[static_cast<size_t>(r)])]) bank.push_back(r);
        if (bank.empty())  // a coreset so small that it holds none of these shots' patches: all of them
            for (size_t r = 0; r < owner.size(); ++r)
                if (in[static_cast<size_t>(owner[r])]) bank.push_back(static_cast<int64_t>(r));
        k.fit(ops::gather_rows(all_rows, bank));
    };
    // leave each shot out: its view (and, when selecting, its synthetic defects) scored by the
    // scorer fitted on the other shots. The clean scores calibrate the threshold. patch-sum needs
    // both patch scorers' held-out scores first (their thresholds divide its parts), and reuses
    // their patch scores.
    const bool sum = select || cfg_.scorer == Scorer::PatchSum;
    std::vector<Scorer> candidates = sum ? std::vector<Scorer>{Scorer::PatchGauss, Scorer::PatchKnn, Scorer::PatchSum}
                                         : std::vector<Scorer>{cfg_.scorer};
    const int64_t per_shot = 1 + (select ? K : 0);  // the view, then its synthetic defects
    // the global scorer (a candidate, or the fallback): pooled features of the views, copies and defects
    Tensor gv, gc, gd;
    auto global_features = [&] {
        gv = features(views).to(Device::cpu());
        if (A > 0) gc = features(copies).to(Device::cpu());
        gd = features(defects).to(Device::cpu());
    };
    if (with_global) {
        candidates.push_back(Scorer::Global);
        global_features();
    }
    auto global_rows = [&](const std::vector<int64_t>& use) {
        std::vector<Tensor> r;
        for (int64_t i : use) {
            r.push_back(gv.slice(i, i + 1));
            if (A > 0) r.push_back(gc.slice(i * A, (i + 1) * A));
        }
        return ops::concat(r, 0);
    };
    auto fit_global = [&](const std::vector<int64_t>& use, method::GaussianDensity& g) {
        try {
            g.fit(global_rows(use), cfg_.density);
        } catch (const Error&) {  // too few samples for Ledoit-Wolf to be positive definite
            method::GaussianOptions r = cfg_.density;
            r.shrinkage = method::Shrinkage::Ridge;
            g.fit(global_rows(use), r);
        }
    };
    const double q = std::min(cfg_.threshold_quantile, 1 - 1e-9);
    std::vector<std::vector<float>> held(candidates.size());
    // patch-gauss's and patch-knn's held-out patch scores (shot i's view, then its defects)
    std::vector<std::vector<Tensor>> grids(2);
    auto view_of_item = [&](int64_t i, int64_t d) -> std::pair<const Tensor&, const Tensor&> {
        if (d == 0) return {fv[static_cast<size_t>(i)], views[static_cast<size_t>(i)]};
        const size_t at = static_cast<size_t>(i * K + d - 1);
        return {fd[at], defects[at]};
    };
    selection_.clear();
    patch_scale_ = {0, 0};
    // candidate c's held-out scores (and, when selecting, its synthetic AUROC)
    auto hold_out = [&](size_t c) {
        std::vector<float> bad;
        const Scorer sc = candidates[c];
        if (sc == Scorer::PatchSum) {  // candidates 0 and 1 ran: their held-out bounds weigh their patch scores
            // (the scores' own bounds, without the spread prior: a scale for each, not a decision)
            patch_scale_ = {prediction_bound(held[0], q), prediction_bound(held[1], q)};
            for (int64_t i = 0; i < n; ++i)
                for (int64_t d = 0; d < per_shot; ++d) {
                    const size_t at = static_cast<size_t>(i * per_shot + d);
                    const auto [fmap, view] = view_of_item(i, d);
                    const float s = map_max(ops::axpby(static_cast<float>(1 / patch_scale_[0]), grids[0][at],
                                                       static_cast<float>(1 / patch_scale_[1]), grids[1][at]),
                                            fmap, view);
                    (d == 0 ? held[c] : bad).push_back(s);
                }
        }
        for (int64_t i = 0; i < n && sc != Scorer::PatchSum; ++i) {
            if (progress) progress({"threshold", static_cast<int64_t>(c) * n + i, static_cast<int64_t>(candidates.size()) * n, 0});
            std::vector<int64_t> others;
            for (int64_t j = 0; j < n; ++j)
                if (j != i) others.push_back(j);
            method::GaussianDensity g;
            method::PatchKnn k;
            if (sc == Scorer::Global) {
                fit_global(others, g);
                held[c].push_back(g.score(gv.slice(i, i + 1)).to_vector()[0]);
                for (float v : g.score(gd.slice(i * K, (i + 1) * K)).to_vector()) bad.push_back(v);
                continue;
            }
            fit_on(sc, others, g, k);
            for (int64_t d = 0; d < per_shot; ++d) {
                const auto [fmap, view] = view_of_item(i, d);
                const Tensor grid = grid_of(sc, g, k, fmap);
                if (sum) grids[c].push_back(grid);
                (d == 0 ? held[c] : bad).push_back(map_max(grid, fmap, view));
            }
        }
        if (select) selection_.push_back({to_string(sc), eval::auroc_pos_neg(held[c], bad)});
    };
    for (size_t c = 0; c < candidates.size(); ++c) hold_out(c);
    // a fixed scorer is the last candidate; auto's patch scorer is patch-sum (candidate 2: choosing
    // between the two patch scorers by their synthetic AUROCs followed the real ranking only where
    // they differ by a point or more, and their sum is at least level with the better one on every
    // dataset measured, docs/results.md); with --auto-global, the global scorer when its synthetic
    // AUROC is higher
    size_t best = candidates.size() - 1;
    double best_patch = 0;  // the best patch scorer's synthetic AUROC
    if (select) {
        best = 2;
        for (size_t c = 0; c < 3; ++c) best_patch = std::max(best_patch, selection_[c].synthetic_auroc);
        if (with_global && selection_[3].synthetic_auroc > selection_[2].synthetic_auroc) best = 3;
    }
    if (select && !with_global && best_patch < cfg_.patch.fallback_auroc) {
        // no patch scorer tells the shots from pasted local defects: the global scorer
        global_features();
        candidates.push_back(Scorer::Global);
        held.emplace_back();
        hold_out(candidates.size() - 1);
        best = candidates.size() - 1;
    }
    cfg_.scorer = candidates[best];
    if (cfg_.scorer != Scorer::PatchSum) patch_scale_ = {0, 0};
    std::vector<int64_t> everyone(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) everyone[static_cast<size_t>(i)] = i;
    if (progress) progress({"density", 0, 1, 0});
    if (cfg_.scorer == Scorer::Global) fit_global(everyone, density_);
    if (cfg_.scorer == Scorer::PatchGauss || cfg_.scorer == Scorer::PatchSum) fit_on(Scorer::PatchGauss, everyone, patch_density_, knn_);
    if (cfg_.scorer == Scorer::PatchKnn || cfg_.scorer == Scorer::PatchSum) fit_on(Scorer::PatchKnn, everyone, patch_density_, knn_);
    if (progress) progress({"density", 1, 1, 0});
    threshold_ = prediction_bound(held[best], q, cfg_.spread_prior, cfg_.spread_prior_weight);
    held_out_ = held[best];
}

int64_t Detector::second_resolution() const {
    return std::clamp<int64_t>(16 * std::lround(static_cast<double>(cfg_.resolution) * cfg_.patch.second_view / 16), 32, 4096);
}

void Detector::fit_second_view(const std::vector<Tensor>& normal, const DetectorConfig& requested,
                               const std::function<void(const FitProgress&)>& progress) {
    // the second view's detector: the configuration fit was given, at the second resolution, with
    // the scorer this view chose (a fixed patch scorer fits no synthetic defects: its held-out
    // scores are the ones Auto's choice had), its own mirror test, shots view and threshold; the
    // backbone is this one's (already fine-tuned when adapt)
    const double f = cfg_.patch.second_view;
    DetectorConfig c = requested;
    c.resolution = second_resolution();
    c.scorer = cfg_.scorer;
    c.adapt = false;
    c.patch.second_view = 0;
    c.view_h = c.view_w = 0;
    if (c.resize_short > 0)
        c.resize_short = std::max(c.resolution, static_cast<int64_t>(std::lround(static_cast<double>(c.resize_short) * f)));
    if (c.tiles > 0)
        c.tiles = std::clamp<int64_t>(method::kTileAlign * std::lround(static_cast<double>(c.tiles) * f / method::kTileAlign),
                                      2 * method::kTileAlign, 4096);
    auto second = std::shared_ptr<Detector>(new Detector(c, backbone_));
    second->fit(normal, [&](const FitProgress& p) {
        if (progress) progress({"second view: " + p.stage, p.done, p.total, p.loss});
    });
    // each view's held-out scores over its own threshold, summed: the sum's threshold is the same
    // bound over those sums (both lists are in shot order)
    const std::vector<float>& h1 = held_out_;
    const std::vector<float>& h2 = second->held_out_;
    FSAD_CHECK(h1.size() == normal.size() && h2.size() == normal.size() && threshold_ > 0 && second->threshold_ > 0,
               "Detector::fit: the second view's held-out scores do not match the first's");
    view_scale_ = {threshold_, second->threshold_};
    std::vector<float> sum(h1.size());
    for (size_t i = 0; i < sum.size(); ++i)
        sum[i] = static_cast<float>(static_cast<double>(h1[i]) / view_scale_[0] + static_cast<double>(h2[i]) / view_scale_[1]);
    threshold_ = prediction_bound(sum, std::min(cfg_.threshold_quantile, 1 - 1e-9), cfg_.spread_prior, cfg_.spread_prior_weight);
    held_out_ = std::move(sum);
    second_ = std::move(second);
}

void Detector::fit_files(const std::vector<std::string>& paths, const std::function<void(const FitProgress&)>& progress) {
    FSAD_CHECK(!paths.empty(), "Detector::fit_files: no image files given");
    std::vector<Tensor> imgs;
    for (const auto& p : paths) imgs.push_back(io::load_image(p));
    fit(imgs, progress);
}

Detector::Scored Detector::score_views(const std::vector<Tensor>& images, bool want_maps) const {
    FSAD_CHECK(fitted(), "Detector::score: the detector is not fitted (call fit or load a model)");
    Scored out;
    if (images.empty()) return out;
    FSAD_CHECK(!want_maps || cfg_.scorer != Scorer::Global,
               "Detector: the global scorer gives one score per image and no anomaly map; fit with a patch scorer "
               "(patch-gauss, patch-knn, patch-sum) for maps");
    std::vector<Tensor> prepared(images.size());
    for (size_t i = 0; i < images.size(); ++i)
        FSAD_CHECK(images[i].defined() && images[i].ndim() == 3 && images[i].dim(0) == 3 && images[i].dim(1) > 0 &&
                       images[i].dim(2) > 0,
                   "Detector::score: image ", i, " is not an RGB image [3,H,W]");
    parallel_for_each(static_cast<int64_t>(images.size()),
                      [&](int64_t i) { prepared[static_cast<size_t>(i)] = view_of(images[static_cast<size_t>(i)]); });
    if (cfg_.scorer == Scorer::Global) {
        out.scores = density_.score(features(prepared)).to_vector();
        return out;
    }
    for (size_t i = 0; i < prepared.size(); ++i) check_tiles(prepared[i], "Detector::score: image ", i);
    patch_score(prepared, out, want_maps);
    if (!second_) return out;
    // the second view: each view's scores (and maps) over its own threshold, summed
    const Scored two = second_->score_views(images, want_maps);
    const double a = 1 / view_scale_[0], b = 1 / view_scale_[1];
    for (size_t i = 0; i < out.scores.size(); ++i)
        out.scores[i] = static_cast<float>(a * static_cast<double>(out.scores[i]) + b * static_cast<double>(two.scores[i]));
    for (size_t i = 0; i < out.maps.size(); ++i) {  // the second map upsampled to the first view's size
        Tensor& m = out.maps[i];
        const Tensor& m2 = two.maps[i];
        const Tensor up = m2.shape() == m.shape()
                              ? m2
                              : io::resize_bilinear(m2.reshape(Shape{1, m2.dim(0), m2.dim(1)}), m.dim(0), m.dim(1)).reshape(m.shape());
        m = ops::axpby(static_cast<float>(a), m, static_cast<float>(b), up);
    }
    return out;
}

std::vector<float> Detector::score(const std::vector<Tensor>& images) const { return score_views(images, false).scores; }

std::vector<Tensor> Detector::score_map(const std::vector<Tensor>& images) const {
    FSAD_CHECK(!images.empty(), "Detector::score_map: no images given");
    Scored s = score_views(images, true);
    std::vector<Tensor> out;
    for (size_t i = 0; i < images.size(); ++i) {
        const Tensor& m = s.maps[i];
        const int64_t H = images[i].dim(1), W = images[i].dim(2);
        if (m.dim(0) == H && m.dim(1) == W) {
            out.push_back(m);
        } else {
            out.push_back(io::resize_bilinear(m.reshape(Shape{1, m.dim(0), m.dim(1)}), H, W).reshape(Shape{H, W}));
        }
    }
    return out;
}

double calibrate_threshold(const std::vector<Tensor>& f, int64_t n, int64_t A, const method::GaussianOptions& opt,
                           double q) {
    std::vector<float> scores;
    if (n < 2) {
        method::GaussianDensity g;
        g.fit(ops::concat(f, 0), opt);
        scores = g.score(ops::concat(f, 0)).to_vector();
        return 1.5 * static_cast<double>(*std::max_element(scores.begin(), scores.end()));
    }
    for (int64_t held = 0; held < n; ++held) {
        std::vector<Tensor> fit_rows, test_rows;
        for (int64_t i = 0; i < n * A; ++i) (i / A == held ? test_rows : fit_rows).push_back(f[static_cast<size_t>(i)]);
        method::GaussianDensity g;
        try {
            g.fit(ops::concat(fit_rows, 0), opt);
        } catch (const Error&) {
            method::GaussianOptions r = opt;
            r.shrinkage = method::Shrinkage::Ridge;
            g.fit(ops::concat(fit_rows, 0), r);
        }
        for (float s : g.score(ops::concat(test_rows, 0)).to_vector()) scores.push_back(s);
    }
    std::sort(scores.begin(), scores.end());
    const double pos = q * static_cast<double>(scores.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(scores.size() - 1, lo + 1);
    return scores[lo] + (pos - static_cast<double>(lo)) * (scores[hi] - scores[lo]);
}

void Detector::put_scorer(std::map<std::string, Tensor>& t, const std::string& prefix) const {
    const Scorer sc = cfg_.scorer;
    FSAD_CHECK(sc != Scorer::Auto, "Detector::save: no scorer was chosen");  // fit replaces Auto
    if (sc == Scorer::Global) {
        t[prefix + "density.mean"] = density_.mean();
        t[prefix + "density.cholesky"] = density_.cholesky();
    }
    if (sc == Scorer::PatchGauss || sc == Scorer::PatchSum) {
        t[prefix + "patch.mean"] = patch_density_.mean();
        t[prefix + "patch.cholesky"] = patch_density_.cholesky();
    }
    if (sc == Scorer::PatchKnn || sc == Scorer::PatchSum) t[prefix + "patch.bank"] = knn_.bank();
    if (sc == Scorer::PatchSum) {  // the divisors of the two scorers' patch scores
        Tensor scale = Tensor::empty(Shape{2});
        scale.data()[0] = static_cast<float>(patch_scale_[0]);
        scale.data()[1] = static_cast<float>(patch_scale_[1]);
        t[prefix + "patch.scale"] = scale;
    }
}

void Detector::save(const std::string& path) const {
    FSAD_CHECK(fitted(), "Detector::save: the detector is not fitted");
    std::map<std::string, Tensor> t;
    for (auto& [k, v] : backbone_->state_dict()) t["backbone." + k] = v.is_cuda() ? v.to(Device::cpu()) : v;
    put_scorer(t, "");
    std::map<std::string, std::string> meta{{"format", kFormat},
                                            {"version", std::to_string(second_ ? kVersion : 2)},  // one view: older fsad reads it
                                            {"config", to_json(cfg_)},
                                            {"threshold", json(threshold_).dump()}};
    // MobileNetV2 variants of the loaded checkpoint travel with the model
    const auto& bc = backbone_->config();
    meta["first_block_expand"] = bc.first_block_expand ? "true" : "false";
    meta["inverted_residual_setting"] = json(bc.inverted_residual_setting).dump();
    meta["activation"] = bc.activation == math::Activation::ReLU ? "relu" : "relu6";
    std::string signed_meta = meta["format"] + meta["version"] + meta["config"] + meta["threshold"] +
                              meta["first_block_expand"] + meta["inverted_residual_setting"] + meta["activation"];
    if (second_) {  // the second view's scorer and configuration (the backbone is the same), the divisors
        second_->put_scorer(t, "view2.");
        Tensor scale = Tensor::empty(Shape{2});
        scale.data()[0] = static_cast<float>(view_scale_[0]);
        scale.data()[1] = static_cast<float>(view_scale_[1]);
        t["view2.scale"] = scale;
        meta["view2.config"] = to_json(second_->cfg_);
        signed_meta += meta["view2.config"];
    }
    meta["checksum"] = std::to_string(checksum(t, signed_meta));
    io::write_safetensors(path, t, meta);
}

void Detector::get_scorer(const std::map<std::string, Tensor>& t, const std::string& prefix, const std::string& path) {
    auto need = [&](const char* k) -> const Tensor& {
        auto it = t.find(prefix + k);
        if (it == t.end()) throw FormatError(path + ": tensor '" + prefix + k + "' missing");
        return it->second;
    };
    try {
        method::GaussianOptions gopt = cfg_.density;
        gopt.l2_normalize = false;
        auto bank = [&]() -> const Tensor& {
            const Tensor& b = need("patch.bank");
            if (b.ndim() != 2 || b.dim(0) < 1) throw FormatError(path + ": tensor '" + prefix + "patch.bank' must be [M, C]");
            return b;
        };
        switch (cfg_.scorer) {
            case Scorer::Global: density_.set(need("density.mean"), need("density.cholesky"), cfg_.density); break;
            case Scorer::PatchGauss: patch_density_.set(need("patch.mean"), need("patch.cholesky"), gopt); break;
            case Scorer::PatchKnn: knn_.fit(bank()); break;
            case Scorer::PatchSum: {
                patch_density_.set(need("patch.mean"), need("patch.cholesky"), gopt);
                knn_.fit(bank());
                const Tensor& scale = need("patch.scale");
                if (scale.numel() != 2 || !(scale.data()[0] > 0) || !(scale.data()[1] > 0) ||
                    !std::isfinite(scale.data()[0]) || !std::isfinite(scale.data()[1]))
                    throw FormatError(path + ": tensor '" + prefix + "patch.scale' must hold two positive finite divisors");
                if (patch_density_.mean().numel() != knn_.bank().dim(1))
                    throw FormatError(path + ": the patch Gaussian and the memory bank differ in feature size");
                patch_scale_ = {scale.data()[0], scale.data()[1]};
                break;
            }
            case Scorer::Auto: throw FormatError(path + ": the model file names no fitted scorer ('auto')");
        }
    } catch (const FormatError&) {
        throw;
    } catch (const Error& e) {
        throw FormatError(path + ": " + e.what());
    }
}

Detector Detector::load(const std::string& path, Device device) {
    io::SafeTensors st = io::read_safetensors(path);
    auto meta = [&](const char* k) -> const std::string& {
        auto it = st.metadata.find(k);
        if (it == st.metadata.end()) throw FormatError(path + ": not an fsad model file (metadata '" + k + "' missing)");
        return it->second;
    };
    if (meta("format") != kFormat) throw FormatError(path + ": not an fsad model file (format '" + meta("format") + "')");
    if (meta("version") != "3" && meta("version") != "2" && meta("version") != "1")
        throw FormatError(path + ": model file version " + meta("version") + ", this fsad reads versions 1 to " +
                          std::to_string(kVersion));
    std::string signed_meta = meta("format") + meta("version") + meta("config") + meta("threshold") +
                              meta("first_block_expand") + meta("inverted_residual_setting") + meta("activation");
    if (auto v2 = st.metadata.find("view2.config"); v2 != st.metadata.end()) signed_meta += v2->second;
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION  // tests/fuzz: mutated files reach the parsing below
    if (meta("checksum") != std::to_string(checksum(st.tensors, signed_meta)))
        throw FormatError(path + ": checksum mismatch: the model file was modified or damaged");
#endif
    DetectorConfig cfg;
    double thr;
    try {
        cfg = detector_config_from_json(meta("config"));
        thr = json::parse(meta("threshold")).get<double>();
    } catch (const std::exception& e) {
        throw FormatError(path + ": invalid configuration in the model file (" + e.what() + ")");
    }
    cfg.weights.clear();  // the weights are in the file
    cfg.device = device;
    Detector d = [&] {  // errors in the configuration or the architecture name the file
        try {
            return Detector(cfg, build_backbone(cfg, &st.metadata));
        } catch (const Error& e) {
            throw FormatError(path + ": " + e.what());
        }
    }();
    std::map<std::string, Tensor> sd;
    for (auto& [k, v] : st.tensors)
        if (k.rfind("backbone.", 0) == 0) sd[k.substr(9)] = v;
    try {
        d.backbone_->load_state_dict(sd);
    } catch (const Error& e) {
        throw FormatError(path + ": " + e.what());
    }
    d.backbone_->eval();
    d.backbone_->prepare_inference();
    d.get_scorer(st.tensors, "", path);
    auto it = st.metadata.find("view2.config");
    if (it == st.metadata.end()) {
        d.cfg_.patch.second_view = 0;  // one view (files before version 3 have no such key)
    } else {
        try {
            DetectorConfig c2 = detector_config_from_json(it->second);
            c2.weights.clear();
            c2.device = device;
            if (d.cfg_.patch.second_view <= 0 || c2.patch.second_view != 0 || c2.scorer == Scorer::Global ||
                c2.scorer == Scorer::Auto || c2.backbone != d.cfg_.backbone || c2.width != d.cfg_.width ||
                c2.patch.stages != d.cfg_.patch.stages)
                throw FormatError("the second view's configuration does not fit the first's");
            d.second_ = std::shared_ptr<Detector>(new Detector(c2, d.backbone_));
        } catch (const FormatError& e) {
            throw FormatError(path + ": " + e.what());
        } catch (const std::exception& e) {
            throw FormatError(path + ": invalid second view configuration in the model file (" + e.what() + ")");
        }
        d.second_->get_scorer(st.tensors, "view2.", path);
        auto sc = st.tensors.find("view2.scale");
        if (sc == st.tensors.end()) throw FormatError(path + ": tensor 'view2.scale' missing");
        const Tensor& v = sc->second;
        if (v.numel() != 2 || !(v.data()[0] > 0) || !(v.data()[1] > 0) || !std::isfinite(v.data()[0]) ||
            !std::isfinite(v.data()[1]))
            throw FormatError(path + ": tensor 'view2.scale' must hold two positive finite divisors");
        d.view_scale_ = {v.data()[0], v.data()[1]};
        d.second_->threshold_ = d.view_scale_[1];
    }
    d.threshold_ = thr;
    return d;
}

}  // namespace fsad

namespace fsad {

Scorer parse_scorer(const std::string& s) {
    if (s == "global") return Scorer::Global;
    if (s == "patch-gauss") return Scorer::PatchGauss;
    if (s == "patch-knn") return Scorer::PatchKnn;
    if (s == "patch-sum") return Scorer::PatchSum;
    if (s == "auto") return Scorer::Auto;
    throw Error("unknown scorer '" + s + "' (auto | global | patch-gauss | patch-knn | patch-sum)");
}
std::string to_string(Scorer s) {
    switch (s) {
        case Scorer::Global: return "global";
        case Scorer::PatchGauss: return "patch-gauss";
        case Scorer::PatchKnn: return "patch-knn";
        case Scorer::PatchSum: return "patch-sum";
        case Scorer::Auto: return "auto";
    }
    return "?";
}
View parse_view(const std::string& s) {
    if (s == "squash") return View::Squash;
    if (s == "keep") return View::Keep;
    if (s == "shots") return View::Shots;
    if (s == "native") return View::Native;
    throw Error("unknown view '" + s + "' (squash | keep | shots | native)");
}
Flips parse_flips(const std::string& s) {
    if (s == "off") return Flips::Off;
    if (s == "on") return Flips::On;
    if (s == "auto") return Flips::Auto;
    throw Error("unknown flips setting '" + s + "' (auto | on | off)");
}
std::string to_string(Flips f) { return f == Flips::On ? "on" : f == Flips::Off ? "off" : "auto"; }
std::string to_string(View v) {
    return v == View::Keep ? "keep" : v == View::Shots ? "shots" : v == View::Native ? "native" : "squash";
}

}  // namespace fsad
