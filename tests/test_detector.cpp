#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "helpers.hpp"

using namespace fsad;
using fsad::test::texture;
namespace fs = std::filesystem;

namespace {
DetectorConfig tiny() {  // the paper's method: fine-tuned ResNet18, global Gaussian on augmented copies
    DetectorConfig c;
    c.backbone = nn::BackboneKind::ResNet18;
    c.adapt = true;
    c.scorer = Scorer::Global;
    c.view = View::Squash;
    c.width = 0.125f;
    c.resolution = 32;
    c.n_augment = 4;
    c.byol.steps = 2;
    c.byol.batch = 4;
    c.byol.hidden = 16;
    c.byol.projection = 8;
    c.byol.negative = method::Negative::CutPaste;
    c.byol.frozen_stages = 1;  // a non-default value the model file must carry
    c.seed = 3;
    return c;
}
std::string tmp(const std::string& n) { return (fs::temp_directory_path() / ("fsad_det_" + n)).string(); }
}  // namespace

TEST_CASE("detector: fit, score, save, load, same scores; deterministic per seed") {
    std::vector<Tensor> shots{texture(1, false), texture(2, false), texture(3, false)};
    std::vector<Tensor> test{texture(4, false), texture(5, true)};
    Detector a(tiny()), b(tiny());
    int calls = 0;
    a.fit(shots, [&](const FitProgress&) { ++calls; });
    b.fit(shots);
    CHECK(calls >= 2);
    std::vector<float> sa = a.score(test), sb = b.score(test);
    CHECK(sa == sb);  // bit-identical for the same seed and thread count
    for (float s : sa) CHECK(std::isfinite(s));
    CHECK(a.threshold() > 0);
    const std::string p = tmp("model.fsad");
    a.save(p);
    Detector l = Detector::load(p);
    CHECK(l.threshold() == a.threshold());
    CHECK(l.config().byol.steps == a.config().byol.steps);
    CHECK(l.config().byol.negative == method::Negative::CutPaste);
    CHECK(l.config().byol.ema == a.config().byol.ema);
    CHECK(l.config().byol.frozen_stages == 1);
    CHECK(l.config().resolution == 32);
    FSAD_CHECK_CLOSE("loaded scores", l.score(test), sa, 1e-3, 1e-4);
    CHECK(l.is_anomalous(test[1]) == a.is_anomalous(test[1]));
    fs::remove(p);
}

TEST_CASE("detector: resolution auto is 448 px for shots of 448 px or more (median short side), else 224") {
    auto img = [](int64_t h, int64_t w) { return Tensor::full(Shape{3, h, w}, 0.5f); };
    CHECK(auto_resolution({img(512, 512), img(600, 448)}) == 448);
    CHECK(auto_resolution({img(447, 900)}) == 224);
    CHECK(auto_resolution({img(300, 300), img(500, 500), img(1000, 1000)}) == 448);  // the median
    CHECK(auto_resolution({img(300, 300), img(500, 500), img(100, 1000)}) == 224);
    CHECK(auto_resolution({img(400, 400), img(500, 500)}) == 448);                    // the middle two's mean: 450
    CHECK(auto_resolution({img(400, 400), img(440, 500)}) == 224);                    // 420
    CHECK(auto_resolution({img(32, 32)}) == 224);
    CHECK_THROWS_AS(auto_resolution({}), Error);

    DetectorConfig c;  // the default: resolution auto
    REQUIRE(c.resolution == 0);
    c.backbone = nn::BackboneKind::ResNet18;
    c.width = 0.05f;
    c.scorer = Scorer::PatchGauss;
    Detector d(c);
    CHECK_THROWS_WITH_AS(d.view_of(img(500, 500)), doctest::Contains("chosen by fit"), Error);
    d.fit({texture(1, false, 500, 500), texture(2, false, 520, 500), texture(3, false, 500, 560)});
    CHECK(d.config().resolution == 448);
    CHECK(d.view_of(img(1000, 1000)).dim(1) == 448);
    CHECK(d.score_map({texture(4, true, 500, 500)})[0].dim(1) == 500);
    d.fit({texture(1, false, 64, 64), texture(2, false, 64, 64)});  // a refit chooses again
    CHECK(d.config().resolution == 224);
    const std::string p = tmp("auto_res.fsad");
    d.save(p);
    CHECK(Detector::load(p).config().resolution == 224);  // the model file keeps the choice
    fs::remove(p);
    c.resize_short = 256;  // a centre crop needs a resolution given
    c.view = View::Squash;
    CHECK_THROWS_WITH_AS(Detector{c}, doctest::Contains("resize_short"), Error);
}

TEST_CASE("detector: bad input and damaged model files are clear errors") {
    Detector d(tiny());
    CHECK_THROWS_WITH_AS(d.fit({}), doctest::Contains("no normal images"), Error);
    CHECK_THROWS_WITH_AS(d.score(texture(1, false)), doctest::Contains("not fitted"), Error);
    CHECK_THROWS_WITH_AS(d.fit({Tensor::zeros(Shape{1, 8, 8})}), doctest::Contains("image 0 is not an RGB image"), Error);
    CHECK_THROWS_WITH_AS(d.fit_files({"/nonexistent/a.png"}), doctest::Contains("/nonexistent/a.png"), IOError);

    DetectorConfig c = tiny();
    c.adapt = false;
    Detector m(c);
    m.fit({texture(1, false), texture(2, false)});
    const std::string p = tmp("damaged.fsad");
    m.save(p);
    std::string bytes = io::read_file(p);
    // modified: one byte of tensor data
    std::string mod = bytes;
    mod[mod.size() - 100] = static_cast<char>(mod[mod.size() - 100] ^ 0x40);
    std::ofstream(p, std::ios::binary) << mod;
    CHECK_THROWS_WITH_AS(Detector::load(p), doctest::Contains("checksum mismatch"), FormatError);
    // truncated
    std::ofstream(p, std::ios::binary) << bytes.substr(0, bytes.size() / 3);
    CHECK_THROWS_WITH_AS(Detector::load(p), doctest::Contains(p.c_str()), FormatError);
    // another kind of safetensors file
    io::write_safetensors(p, nn::make_backbone({nn::BackboneKind::ResNet18, 0.125f})->state_dict());
    CHECK_THROWS_WITH_AS(Detector::load(p), doctest::Contains("not an fsad model file"), FormatError);
    // saving into a missing folder fails without leaving anything behind
    CHECK_THROWS_AS(m.save("/nonexistent-dir/x.fsad"), IOError);
    fs::remove(p);
}

TEST_CASE("detector: a progress callback that throws cancels fit in every stage, and a new fit works") {
    struct Stop {
        std::string stage;
    };
    for (const char* stage : {"fine-tune", "features", "density", "threshold"}) {
        CAPTURE(stage);
        Detector d(tiny());
        std::vector<std::string> seen;
        auto cancel = [&](const FitProgress& p) {
            seen.push_back(p.stage);
            if (p.stage == stage) throw Stop{p.stage};
        };
        bool stopped = false;
        try {
            d.fit({texture(1, false), texture(2, false), texture(3, false)}, cancel);
        } catch (const Stop& s) {
            stopped = s.stage == stage;
        }
        CHECK(stopped);
        CHECK(seen.back() == stage);
        if (std::string(stage) != "threshold") CHECK_FALSE(d.fitted());  // at "threshold" the density is fitted
    }
    Detector d(tiny());
    int calls = 0;
    CHECK_THROWS_AS(d.fit({texture(1, false), texture(2, false)}, [&](const FitProgress&) {
        if (++calls == 2) throw Error("stop");
    }), Error);
    d.fit({texture(1, false), texture(2, false)});  // fitted again after the cancelled fit
    CHECK(d.fitted());
    CHECK(d.score(texture(4, false)) > 0);
}

TEST_CASE("detector: scoring a loaded detector from several threads gives the sequential scores") {
    DetectorConfig c = tiny();
    c.adapt = false;
    Detector m(c);
    m.fit({texture(1, false), texture(2, false), texture(3, false)});
    std::vector<Tensor> test{texture(7, false), texture(8, true), texture(9, false)};
    const std::vector<float> want = m.score(test);
    std::vector<std::vector<float>> got(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < got.size(); ++t)
        threads.emplace_back([&, t] {
            for (int rep = 0; rep < 3; ++rep) got[t] = m.score(test);
        });
    for (auto& t : threads) t.join();
    for (const auto& g : got) CHECK(g == want);
}

TEST_CASE("detector: fine-tuning in BF16 (ByolOptions::precision) leaves the density's features in FP32; the model file keeps it") {
    const std::vector<Tensor> shots{texture(1, false), texture(2, false), texture(3, false)};
    REQUIRE(ops::precision() == ops::Precision::FP32);
    DetectorConfig mixed_cfg = tiny();
    mixed_cfg.byol.precision = ops::Precision::BF16;
    Detector fp32(tiny()), mixed(mixed_cfg), bf16(tiny());
    fp32.fit(shots);
    mixed.fit(shots);
    CHECK(ops::precision() == ops::Precision::FP32);  // the fine-tuning's scope has ended
    ops::set_precision(ops::Precision::BF16);
    try {
        bf16.fit(shots);  // fine-tuning and features in BF16
    } catch (...) {
        ops::set_precision(ops::Precision::FP32);
        throw;
    }
    ops::set_precision(ops::Precision::FP32);
    // the fine-tuned weights: those of the all-BF16 fit bit for bit, not the FP32 fit's
    auto weights = [](const Detector& d) {
        std::vector<float> all;
        for (auto& [k, v] : d.backbone().state_dict()) {
            const std::vector<float> x = v.to_vector();
            all.insert(all.end(), x.begin(), x.end());
        }
        return all;
    };
    CHECK(weights(mixed) == weights(bf16));
    CHECK(weights(mixed) != weights(fp32));
    // the density's features: not BF16's (the all-BF16 fit's mean differs)
    CHECK(mixed.density().mean().to_vector() != bf16.density().mean().to_vector());
    // the model file records the fine-tuning's precision; files without the key load as unset
    const std::string p = tmp("mixed.fsad");
    mixed.save(p);
    Detector l = Detector::load(p);
    REQUIRE(l.config().byol.precision.has_value());
    CHECK(*l.config().byol.precision == ops::Precision::BF16);
    fs::remove(p);
    std::string j = to_json(tiny());
    const std::string key = "\"precision\":null,";
    REQUIRE(j.find(key) != std::string::npos);
    CHECK_FALSE(detector_config_from_json(j).byol.precision.has_value());
    j.erase(j.find(key), key.size());
    CHECK_FALSE(detector_config_from_json(j).byol.precision.has_value());
    j = to_json(mixed_cfg);
    j.replace(j.find("\"bf16\""), 6, "\"fp16\"");
    CHECK_THROWS_WITH_AS(detector_config_from_json(j), doctest::Contains("unknown precision 'fp16'"), Error);
}

TEST_CASE("detector: a version-1 model file, written by fsad before the patch scorers, loads and scores as it did") {
    // tests/data/model_v1.fsad: `fsad fit --normal DIR --backbone resnet18 --weights none --width 0.05
    // --res 32 --steps 0 --n-augment 2` by fsad at a367ea2 (model file version 1) on six of
    // tests/data/images; the scores are what that fsad's `fsad score --csv` printed for them.
    const Detector d = Detector::load(test::data_dir() + "/model_v1.fsad");
    CHECK(d.config().scorer == Scorer::Global);
    CHECK(d.config().view == View::Squash);
    CHECK(d.config().n_augment == 2);
    CHECK(d.config().backbone == nn::BackboneKind::ResNet18);
    CHECK(d.threshold() == doctest::Approx(8.9244).epsilon(1e-5));
    const std::vector<std::pair<const char*, float>> want{{"gray16.png", 4.30146f}, {"gray8.png", 4.30146f},
                                                          {"graya8.png", 4.30146f}, {"rgb16.png", 4.88617f},
                                                          {"rgb8.png", 4.90984f},   {"rgba8.png", 4.90984f}};
    for (const auto& [name, score] : want) {
        CAPTURE(name);
        CHECK(d.score(io::load_image(test::data_dir() + "/images/" + name)) == doctest::Approx(score).epsilon(2e-5));
    }
}

TEST_CASE("detector: a version-2 model file, written by fsad before the configuration was serialised by nlohmann's macros, loads and scores as it did") {
    // tests/data/model_v2.fsad: `fsad fit --normal DIR --backbone resnet18 --weights none --width 0.05
    // --res 32 --coreset 0.5 --patch-stages 1,2 --quantile 0.95 --seed 3 --negatives cutpaste
    // --freeze-stages 1 --train-precision bf16` by fsad at 912b0bd on the six images of
    // tests/data/images (3 x 2 px: the shots' view is 32 x 48); the scores are what that fsad's
    // Detector::score gave for two of test::texture's images.
    const Detector d = Detector::load(test::data_dir() + "/model_v2.fsad");
    const DetectorConfig& c = d.config();
    CHECK(c.scorer == Scorer::PatchKnn);
    CHECK(c.view == View::Shots);
    CHECK(c.flips == Flips::Off);
    CHECK(c.view_h == 32);
    CHECK(c.view_w == 48);
    CHECK(c.patch.coreset == 0.5);
    CHECK(c.patch.stages == std::vector<int64_t>{1, 2});
    CHECK(c.threshold_quantile == 0.95);
    CHECK(c.seed == 3);
    CHECK(c.byol.negative == method::Negative::CutPaste);
    CHECK(c.byol.frozen_stages == 1);
    REQUIRE(c.byol.precision.has_value());
    CHECK(*c.byol.precision == ops::Precision::BF16);
    CHECK(c.backbone == nn::BackboneKind::ResNet18);
    CHECK(c.width == 0.05f);
    CHECK(d.threshold() == doctest::Approx(1118.2422292072092).epsilon(1e-9));
    const std::vector<std::pair<bool, float>> want{{false, 0.775869846f}, {true, 0.918641567f}};
    for (const auto& [scratch, score] : want) {
        CAPTURE(scratch);
        CHECK(d.score(test::texture(7, scratch, 40, 56)) == doctest::Approx(score).epsilon(2e-5));
    }
    // and this fsad writes that configuration byte for byte as that fsad did, but for the keys
    // added since, at their defaults (the file's loads with them): patch.fallback_auroc, the
    // threshold's spread prior, the tiles; patch.second_view, which a file without a second view
    // loads as 0 (one view), whatever the default
    CHECK(c.patch.second_view == 0);
    CHECK(d.second_view() == nullptr);
    std::string ours = to_json(c);
    for (const std::string added : {"\"fallback_auroc\":0.65,", "\"spread_prior\":0.15,\"spread_prior_weight\":5.0,",
                                    ",\"tile_overlap\":0.25", "\"tiles\":0,", ",\"second_view\":0.0"}) {
        CAPTURE(added);
        REQUIRE(ours.find(added) != std::string::npos);
        ours.erase(ours.find(added), added.size());
    }
    CHECK(ours == io::read_safetensors(test::data_dir() + "/model_v2.fsad").metadata.at("config"));
}

TEST_CASE("detector configuration JSON: round trip, older files' defaults, errors naming the key") {
    DetectorConfig c = tiny();
    c.scorer = Scorer::PatchGauss;
    c.view = View::Keep;
    c.flips = Flips::On;
    c.patch.stages = {2, 3};
    c.density.shrinkage = method::Shrinkage::Ridge;
    c.byol.pair = method::PairLoss::FixedCentre;
    c.byol.negative = method::Negative::Scar;
    const std::string j = to_json(c);
    CHECK(to_json(detector_config_from_json(j)) == j);
    auto edited = [&](const std::string& from, const std::string& to) {
        std::string e = j;
        const size_t at = e.find(from);
        REQUIRE_MESSAGE(at != std::string::npos, from);
        return e.replace(at, from.size(), to);
    };
    // keys that files before the patch scorers and the mirrored shots lack: what they were fitted with
    std::string v1 = edited("\"scorer\":\"patch-gauss\",", "");
    for (const char* k : {"\"view\":\"keep\",", "\"flips\":\"on\",", "\"max_aspect\":8.0,"}) v1.erase(v1.find(k), std::strlen(k));
    const DetectorConfig v = detector_config_from_json(v1);
    CHECK(v.scorer == Scorer::Global);
    CHECK(v.view == View::Squash);
    CHECK(v.flips == Flips::Off);
    CHECK(v.max_aspect == 8.0);
    // a key every file has held is required; a bad value is refused, naming its key
    CHECK_THROWS_WITH_AS(detector_config_from_json(edited("\"lr\":", "\"rate\":")),
                         doctest::Contains("key 'byol/lr' not found"), FormatError);
    CHECK_THROWS_WITH_AS(detector_config_from_json(edited("\"resolution\":32", "\"resolution\":\"32\"")),
                         doctest::Contains("(/resolution) type must be number"), FormatError);
    CHECK_THROWS_WITH_AS(detector_config_from_json(edited("\"view\":\"keep\"", "\"view\":\"kept\"")),
                         doctest::Contains("(/view) unknown view 'kept' (squash | keep | shots | native)"), FormatError);
    // names that used to be read as the first choice are refused too
    CHECK_THROWS_WITH_AS(detector_config_from_json(edited("\"shrinkage\":\"ridge\"", "\"shrinkage\":\"rigde\"")),
                         doctest::Contains("(/density/shrinkage) unknown shrinkage 'rigde'"), FormatError);
    CHECK_THROWS_WITH_AS(detector_config_from_json(edited("\"fixed-centre\"", "\"fixed-center\"")),
                         doctest::Contains("(/byol/pair) unknown pair loss 'fixed-center'"), FormatError);
}
