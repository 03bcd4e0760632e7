#include "fsad/method/detector.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "fsad/core/parallel.hpp"
#include "fsad/io/image.hpp"
#include "fsad/io/safetensors.hpp"

namespace fsad {
namespace {

using json = nlohmann::json;

json config_json(const DetectorConfig& c) {
    const auto& b = c.byol;
    return {{"backbone", nn::to_string(c.backbone)},
            {"width", c.width},
            {"weights", c.weights},
            {"adapt", c.adapt},
            {"resolution", c.resolution},
            {"resize_short", c.resize_short},
            {"n_augment", c.n_augment},
            {"density", {{"shrinkage", c.density.shrinkage == method::Shrinkage::LedoitWolf ? "ledoit-wolf" : "ridge"},
                         {"ridge", c.density.ridge},
                         {"l2_normalize", c.density.l2_normalize}}},
            {"threshold_quantile", c.threshold_quantile},
            {"seed", c.seed},
            {"byol",
             {{"steps", b.steps}, {"batch", b.batch}, {"lr", b.lr}, {"beta1", b.beta1}, {"beta2", b.beta2},
              {"ema", b.ema}, {"ema_cosine", b.ema_cosine}, {"contrastive", b.contrastive},
              {"pair", b.pair == method::PairLoss::CrossInstance ? "cross-instance"
                       : b.pair == method::PairLoss::FixedCentre ? "fixed-centre"
                                                                 : "none"},
              {"lambda_pp", b.lambda_pp}, {"negative", method::to_string(b.negative)}, {"lambda_np", b.lambda_np},
              {"hidden", b.hidden}, {"projection", b.projection}, {"freeze_backbone_bn", b.freeze_backbone_bn},
              {"frozen_stages", b.frozen_stages},
              {"precision", b.precision ? json(ops::precision_name(*b.precision)) : json(nullptr)}}}};
}

DetectorConfig config_from_json(const json& j) {
    DetectorConfig c;
    c.backbone = nn::parse_backbone_kind(j.at("backbone").get<std::string>());
    c.width = j.at("width").get<float>();
    c.weights = j.at("weights").get<std::string>();
    c.adapt = j.at("adapt").get<bool>();
    c.resolution = j.at("resolution").get<int64_t>();
    c.resize_short = j.at("resize_short").get<int64_t>();
    c.n_augment = j.at("n_augment").get<int64_t>();
    const auto& d = j.at("density");
    c.density.shrinkage = d.at("shrinkage").get<std::string>() == "ridge" ? method::Shrinkage::Ridge : method::Shrinkage::LedoitWolf;
    c.density.ridge = d.at("ridge").get<double>();
    c.density.l2_normalize = d.at("l2_normalize").get<bool>();
    c.threshold_quantile = j.at("threshold_quantile").get<double>();
    c.seed = j.at("seed").get<uint64_t>();
    const auto& b = j.at("byol");
    c.byol.steps = b.at("steps").get<int64_t>();
    c.byol.batch = b.at("batch").get<int64_t>();
    c.byol.lr = b.at("lr").get<float>();
    c.byol.beta1 = b.at("beta1").get<float>();
    c.byol.beta2 = b.at("beta2").get<float>();
    c.byol.ema = b.at("ema").get<float>();
    c.byol.ema_cosine = b.at("ema_cosine").get<bool>();
    c.byol.lambda_pp = b.at("lambda_pp").get<float>();
    c.byol.lambda_np = b.at("lambda_np").get<float>();
    c.byol.freeze_backbone_bn = b.value("freeze_backbone_bn", false);
    c.byol.frozen_stages = b.value("frozen_stages", int64_t{0});
    if (b.contains("precision") && !b.at("precision").is_null())
        c.byol.precision = ops::parse_precision(b.at("precision").get<std::string>());
    c.byol.contrastive = b.at("contrastive").get<bool>();
    const std::string pair = b.at("pair").get<std::string>();
    c.byol.pair = pair == "cross-instance" ? method::PairLoss::CrossInstance
                  : pair == "fixed-centre" ? method::PairLoss::FixedCentre
                                           : method::PairLoss::None;
    c.byol.negative = method::parse_negative(b.at("negative").get<std::string>());
    c.byol.hidden = b.at("hidden").get<int64_t>();
    c.byol.projection = b.at("projection").get<int64_t>();
    return c;
}

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

Detector::Detector(DetectorConfig cfg) : Detector(cfg, initial_backbone(cfg)) {}

Detector::Detector(DetectorConfig cfg, std::shared_ptr<nn::Backbone> backbone)
    : cfg_(std::move(cfg)), backbone_(std::move(backbone)) {
    FSAD_CHECK(cfg_.resolution >= 32, "Detector: resolution must be at least 32, got ", cfg_.resolution);
    FSAD_CHECK(cfg_.n_augment >= 1, "Detector: n_augment must be at least 1");
    FSAD_CHECK(cfg_.resize_short == 0 || cfg_.resize_short >= cfg_.resolution,
               "Detector: resize_short must be 0 or at least the resolution");
    FSAD_CHECK(cfg_.threshold_quantile > 0 && cfg_.threshold_quantile <= 1, "Detector: threshold_quantile in (0, 1]");
    if (cfg_.threads > 0) set_num_threads(cfg_.threads);
    cfg_.byol.augment.size = cfg_.resolution;
    cfg_.byol.seed = cfg_.seed;
    cfg_.byol.device = cfg_.device;
    backbone_->to(cfg_.device);
}

Tensor Detector::preprocess(const Tensor& img) const {
    // already at the working size: used as it is (only read from here on)
    if (cfg_.resize_short == 0 && img.dim(1) == cfg_.resolution && img.dim(2) == cfg_.resolution) return img;
    const Tensor r = cfg_.resize_short > 0 ? io::resize_short_center_crop(img, cfg_.resize_short, cfg_.resolution, cfg_.resolution)
                                           : io::resize_antialias(img, cfg_.resolution, cfg_.resolution);
    return r;
}

Tensor Detector::features(const std::vector<Tensor>& prepared, const std::function<void(int64_t)>& done) const {
    NoGradGuard ng;
    std::vector<Tensor> out;
    const size_t bs = cfg_.device.is_cuda() ? 256 : 32;  // a GPU wants big batches; the CPU, cache-sized ones
    for (size_t b = 0; b < prepared.size(); b += bs) {
        std::vector<Tensor> chunk(prepared.begin() + static_cast<std::ptrdiff_t>(b),
                                  prepared.begin() + static_cast<std::ptrdiff_t>(std::min(prepared.size(), b + bs)));
        out.push_back(backbone_->forward(Var(method::normalized_batch(chunk).to(cfg_.device))).value());
        if (done) done(static_cast<int64_t>(std::min(prepared.size(), b + bs)));
    }
    return ops::concat(out, 0);
}

void Detector::fit(const std::vector<Tensor>& normal, const std::function<void(const FitProgress&)>& progress) {
    FSAD_CHECK(!normal.empty(), "Detector::fit: no normal images given (need at least one)");
    for (size_t i = 0; i < normal.size(); ++i)
        FSAD_CHECK(normal[i].defined() && normal[i].ndim() == 3 && normal[i].dim(0) == 3 && normal[i].dim(1) > 0 &&
                       normal[i].dim(2) > 0,
                   "Detector::fit: image ", i, " is not an RGB image [3,H,W]");
    if (cfg_.adapt && cfg_.byol.steps > 0) {
        const nn::BackboneConfig bc = backbone_->config();
        method::ByolTrainer tr(backbone_, [&] { return nn::make_backbone(bc, cfg_.seed + 1); }, cfg_.byol);
        tr.fit(normal, [&](const method::StepStats& s) {
            if (progress) progress({"fine-tune", s.step + 1, cfg_.byol.steps, s.loss});
        });
    }
    backbone_->eval();
    backbone_->prepare_inference();  // the weights are final: packed once for every image scored
    // N_A augmented copies of every shot (regular t), backbone in eval mode
    const int64_t n = static_cast<int64_t>(normal.size()), A = cfg_.n_augment;
    std::vector<Tensor> copies(static_cast<size_t>(n * A));
    Rng seeder(cfg_.seed ^ 0x5deece66dULL);
    std::vector<uint64_t> seeds(copies.size());
    for (auto& s : seeds) s = seeder.engine()();
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < n * A; ++i) {
        Rng r(seeds[static_cast<size_t>(i)]);
        copies[static_cast<size_t>(i)] = method::augment(normal[static_cast<size_t>(i / A)], cfg_.byol.augment, r);
    }
    if (progress) progress({"features", 0, n * A, 0});
    // the fit (and its leave-one-shot-out threshold) runs on the CPU: few samples, low-rank form
    Tensor f = features(copies, [&](int64_t d) {
                   if (progress) progress({"features", d, n * A, 0});
               }).to(Device::cpu());
    if (progress) progress({"density", 0, 1, 0});
    density_.fit(f, cfg_.density);
    if (progress) progress({"density", 1, 1, 0});
    std::vector<Tensor> rows;
    for (int64_t i = 0; i < n * A; ++i) rows.push_back(f.slice(i, i + 1));
    if (progress) progress({"threshold", 0, 1, 0});
    threshold_ = calibrate_threshold(rows, n, A, cfg_.density, cfg_.threshold_quantile);
    if (progress) progress({"threshold", 1, 1, 0});
}

void Detector::fit_files(const std::vector<std::string>& paths, const std::function<void(const FitProgress&)>& progress) {
    FSAD_CHECK(!paths.empty(), "Detector::fit_files: no image files given");
    std::vector<Tensor> imgs;
    for (const auto& p : paths) imgs.push_back(io::load_image(p));
    fit(imgs, progress);
}

std::vector<float> Detector::score(const std::vector<Tensor>& images) const {
    FSAD_CHECK(fitted(), "Detector::score: the detector is not fitted (call fit or load a model)");
    if (images.empty()) return {};
    std::vector<Tensor> prepared(images.size());
    for (size_t i = 0; i < images.size(); ++i)
        FSAD_CHECK(images[i].defined() && images[i].ndim() == 3 && images[i].dim(0) == 3 && images[i].dim(1) > 0 &&
                       images[i].dim(2) > 0,
                   "Detector::score: image ", i, " is not an RGB image [3,H,W]");
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < images.size(); ++i) prepared[i] = preprocess(images[i]);
    return density_.score(features(prepared)).to_vector();
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

void Detector::save(const std::string& path) const {
    FSAD_CHECK(fitted(), "Detector::save: the detector is not fitted");
    std::map<std::string, Tensor> t;
    for (auto& [k, v] : backbone_->state_dict()) t["backbone." + k] = v.is_cuda() ? v.to(Device::cpu()) : v;
    t["density.mean"] = density_.mean();
    t["density.cholesky"] = density_.cholesky();
    json meta_cfg = config_json(cfg_);
    std::map<std::string, std::string> meta{{"format", kFormat},
                                            {"version", std::to_string(kVersion)},
                                            {"config", meta_cfg.dump()},
                                            {"threshold", json(threshold_).dump()}};
    // MobileNetV2 variants of the loaded checkpoint travel with the model
    const auto& bc = backbone_->config();
    meta["first_block_expand"] = bc.first_block_expand ? "true" : "false";
    meta["inverted_residual_setting"] = json(bc.inverted_residual_setting).dump();
    meta["activation"] = bc.activation == math::Activation::ReLU ? "relu" : "relu6";
    std::string signed_meta = meta["format"] + meta["version"] + meta["config"] + meta["threshold"] +
                              meta["first_block_expand"] + meta["inverted_residual_setting"] + meta["activation"];
    meta["checksum"] = std::to_string(checksum(t, signed_meta));
    io::write_safetensors(path, t, meta);
}

Detector Detector::load(const std::string& path, Device device) {
    io::SafeTensors st = io::read_safetensors(path);
    auto meta = [&](const char* k) -> const std::string& {
        auto it = st.metadata.find(k);
        if (it == st.metadata.end()) throw FormatError(path + ": not an fsad model file (metadata '" + k + "' missing)");
        return it->second;
    };
    if (meta("format") != kFormat) throw FormatError(path + ": not an fsad model file (format '" + meta("format") + "')");
    if (meta("version") != std::to_string(kVersion))
        throw FormatError(path + ": model file version " + meta("version") + ", this fsad reads version " +
                          std::to_string(kVersion));
    const std::string signed_meta = meta("format") + meta("version") + meta("config") + meta("threshold") +
                                    meta("first_block_expand") + meta("inverted_residual_setting") + meta("activation");
    if (meta("checksum") != std::to_string(checksum(st.tensors, signed_meta)))
        throw FormatError(path + ": checksum mismatch: the model file was modified or damaged");
    DetectorConfig cfg;
    double thr;
    try {
        cfg = config_from_json(json::parse(meta("config")));
        thr = json::parse(meta("threshold")).get<double>();
    } catch (const std::exception& e) {
        throw FormatError(path + ": invalid configuration in the model file (" + e.what() + ")");
    }
    cfg.weights.clear();  // the weights are in the file
    cfg.device = device;
    Detector d(cfg, build_backbone(cfg, &st.metadata));
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
    auto need = [&](const char* k) -> const Tensor& {
        auto it = st.tensors.find(k);
        if (it == st.tensors.end()) throw FormatError(path + ": tensor '" + std::string(k) + "' missing");
        return it->second;
    };
    try {
        d.density_.set(need("density.mean"), need("density.cholesky"), cfg.density);
    } catch (const FormatError&) {
        throw;
    } catch (const Error& e) {
        throw FormatError(path + ": " + e.what());
    }
    d.threshold_ = thr;
    return d;
}

}  // namespace fsad

namespace fsad {

std::string to_json(const DetectorConfig& cfg) { return config_json(cfg).dump(); }

DetectorConfig detector_config_from_json(const std::string& text) {
    try {
        return config_from_json(json::parse(text));
    } catch (const json::exception& e) {
        throw FormatError(std::string("detector configuration: ") + e.what());
    }
}

}  // namespace fsad
