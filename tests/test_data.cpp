// Datasets, corruptions, synthetic data, the evaluation protocol and reports.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <fsad/fsad.hpp>

#include "helpers.hpp"

using namespace fsad;
namespace fs = std::filesystem;
using fsad::test::TempDir;

namespace {

Tensor constant(int64_t h, int64_t w, float r, float g, float b) {
    Tensor t = Tensor::empty(Shape{3, h, w});
    for (int64_t i = 0; i < h * w; ++i) {
        t.data()[i] = r;
        t.data()[h * w + i] = g;
        t.data()[2 * h * w + i] = b;
    }
    return t;
}

double diff_rms(const Tensor& a, const Tensor& b) {
    double s = 0;
    for (int64_t i = 0; i < a.numel(); ++i) s += (a.data()[i] - b.data()[i]) * (a.data()[i] - b.data()[i]);
    return std::sqrt(s / static_cast<double>(a.numel()));
}

double max_abs(const Tensor& a, const Tensor& b) {
    double m = 0;
    for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(a.data()[i] - b.data()[i])));
    return m;
}

Tensor textured(int64_t n, uint64_t seed) {
    Rng rng(seed);
    return data::synthetic_part("stone", n, rng);
}


}  // namespace

TEST_CASE("corruptions change an image by the expected amount") {
    const Tensor grey = constant(32, 32, 0.5f, 0.5f, 0.5f);
    Rng rng(1);
    SUBCASE("gaussian_noise: N(0, 0.06)") {
        CHECK(diff_rms(data::corrupt(grey, "gaussian_noise", rng), grey) == doctest::Approx(0.06).epsilon(0.08));
    }
    SUBCASE("shot_noise: Poisson(250 x) / 250, std sqrt(x / 250)") {
        CHECK(diff_rms(data::corrupt(grey, "shot_noise", rng), grey) == doctest::Approx(std::sqrt(0.5 / 250)).epsilon(0.08));
    }
    SUBCASE("impulse_noise: 2% of the values set to 0 or 1") {
        Tensor o = data::corrupt(grey, "impulse_noise", rng);
        int64_t changed = 0, extreme = 0;
        for (int64_t i = 0; i < o.numel(); ++i) {
            changed += o.data()[i] != 0.5f;
            extreme += o.data()[i] == 0.0f || o.data()[i] == 1.0f;
        }
        CHECK(changed == extreme);
        CHECK(static_cast<double>(changed) / static_cast<double>(o.numel()) == doctest::Approx(0.02).epsilon(0.3));
    }
    SUBCASE("defocus_blur: a 3x3 Gaussian of sigma 0.5 at radius 0.4") {
        Tensor d = Tensor::zeros(Shape{3, 9, 9});
        d.data()[4 * 9 + 4] = 1.0f;
        Tensor o = data::corrupt(d, "defocus_blur", rng);
        const double e = std::exp(-2.0), c = 1 / (1 + 2 * e), s = e / (1 + 2 * e);
        CHECK(o.data()[4 * 9 + 4] == doctest::Approx(c * c).epsilon(1e-5));
        CHECK(o.data()[4 * 9 + 5] == doctest::Approx(c * s).epsilon(1e-5));
        CHECK(o.data()[3 * 9 + 3] == doctest::Approx(s * s).epsilon(1e-5));
        CHECK(o.data()[2 * 9 + 4] == doctest::Approx(0.0).epsilon(1e-7));
        CHECK(max_abs(data::corrupt(grey, "defocus_blur", rng), grey) < 1e-6);
    }
    SUBCASE("brightness: HSV value + 0.1") {
        Tensor o = data::corrupt(constant(8, 8, 0.2f, 0.4f, 0.6f), "brightness", rng);
        CHECK(o.data()[0] == doctest::Approx(0.2f * 0.7f / 0.6f).epsilon(1e-5));  // hue and saturation kept
        CHECK(o.data()[64 + 5] == doctest::Approx(0.4f * 0.7f / 0.6f).epsilon(1e-5));
        CHECK(o.data()[128 + 7] == doctest::Approx(0.7f).epsilon(1e-5));
    }
    SUBCASE("contrast: (x - channel mean) * 0.5 + mean") {
        Tensor x = textured(32, 3);
        Tensor o = data::corrupt(x, "contrast", rng);
        double m = 0;
        for (int64_t i = 0; i < 32 * 32; ++i) m += x.data()[i];
        m /= 1024;
        CHECK(o.data()[17] == doctest::Approx((x.data()[17] - m) * 0.5 + m).epsilon(1e-5));
    }
    SUBCASE("zoom_blur, pixelate and jpeg keep a flat image, change a textured one") {
        Tensor x = textured(32, 4);
        for (const char* n : {"zoom_blur", "pixelate", "jpeg"}) {
            CAPTURE(n);
            CHECK(max_abs(data::corrupt(grey, n, rng), grey) < 2.5 / 255);
            const double d = diff_rms(data::corrupt(x, n, rng), x);
            CHECK(d > 0.002);
            CHECK(d < 0.1);
        }
    }
    SUBCASE("every corruption keeps shape and range") {
        Tensor x = textured(32, 5);
        for (const auto& n : data::all_corruptions()) {
            CAPTURE(n);
            Tensor o = data::corrupt(x, n, rng);
            REQUIRE(o.shape() == x.shape());
            for (int64_t i = 0; i < o.numel(); ++i) REQUIRE((o.data()[i] >= 0.0f && o.data()[i] <= 1.0f));
            CHECK(diff_rms(o, x) > 1e-4);
        }
    }
    SUBCASE("unknown corruption names the name") {
        CHECK_THROWS_WITH_AS(data::corrupt(grey, "fog", rng), doctest::Contains("fog"), Error);
    }
}

TEST_CASE("corruptions are deterministic per seed") {
    Tensor x = textured(32, 6);
    for (const auto& n : data::all_corruptions()) {
        CAPTURE(n);
        Rng a(7), b(7), c(8);
        Tensor oa = data::corrupt(x, n, a), ob = data::corrupt(x, n, b), oc = data::corrupt(x, n, c);
        CHECK(max_abs(oa, ob) == 0.0);
        const bool random = n == "gaussian_noise" || n == "shot_noise" || n == "impulse_noise" || n == "glass_blur" || n == "elastic";
        if (random) CHECK(max_abs(oa, oc) > 0.0);
    }
}

TEST_CASE("box_resize is Pillow's BOX filter; HSV round-trips") {
    Tensor x = Tensor::empty(Shape{1, 1, 4});
    const float v[4] = {0.0f, 1.0f, 2.0f, 4.0f};
    std::copy(v, v + 4, x.data());
    Tensor d = data::box_resize(x, 1, 2);
    CHECK(d.data()[0] == doctest::Approx(0.5));
    CHECK(d.data()[1] == doctest::Approx(3.0));
    Tensor u = data::box_resize(d, 1, 4);  // enlarging: nearest source pixel
    CHECK(u.data()[0] == doctest::Approx(0.5));
    CHECK(u.data()[1] == doctest::Approx(0.5));
    CHECK(u.data()[3] == doctest::Approx(3.0));
    Tensor img = textured(16, 9);
    CHECK(max_abs(data::hsv_to_rgb(data::rgb_to_hsv(img)), img) < 1e-5);
}

TEST_CASE("synthetic parts are deterministic and defects are local") {
    for (const auto& p : data::synthetic_products()) {
        CAPTURE(p);
        Rng a(3), b(3);
        Tensor x = data::synthetic_part(p, 64, a), y = data::synthetic_part(p, 64, b);
        CHECK(max_abs(x, y) == 0.0);
        for (const auto& d : data::synthetic_defects()) {
            CAPTURE(d);
            Rng r(11);
            Tensor z = data::add_defect(x, d, r);
            int64_t changed = 0;
            for (int64_t i = 0; i < z.numel(); ++i) changed += std::abs(z.data()[i] - x.data()[i]) > 0.02f;
            const double frac = static_cast<double>(changed) / static_cast<double>(z.numel());
            CHECK(frac > 0.002);
            CHECK(frac < 0.25);
        }
    }
    Rng r(1);
    CHECK_THROWS_WITH_AS(data::synthetic_part("glass", 64, r), doctest::Contains("glass"), Error);
}

TEST_CASE("dataset loaders read generated layouts") {
    TempDir tmp("layouts");
    data::SyntheticOptions so;
    so.products = {"metal", "wood"};
    so.size = 32;
    so.pool = 4;
    so.test_normal = 2;
    so.test_per_defect = 1;
    const data::Dataset gen = data::synthetic_dataset(so);
    REQUIRE(gen.categories.size() == 2);
    CHECK(gen.categories[0].test.size() == 6);

    SUBCASE("mvtec") {
        data::write_dataset(gen, (tmp.path / "mv").string(), "mvtec");
        data::Dataset ds = data::load_mvtec((tmp.path / "mv").string());
        REQUIRE(ds.categories.size() == 2);
        CHECK(ds.categories[0].name == "metal");
        CHECK(ds.categories[0].pool.size() == 4);
        CHECK(ds.categories[0].test.size() == 6);
        CHECK_FALSE(ds.categories[0].pool_rest_is_test);
        int anomalous = 0;
        for (const auto& s : ds.categories[1].test) anomalous += s.label;
        CHECK(anomalous == 4);
        // pixels survive the round trip through PNG
        CHECK(max_abs(data::materialize(ds.categories[0].pool[0]), gen.categories[0].pool[0].image) < 0.5 / 255 + 1e-6);
        data::LoadOptions lo;
        lo.categories = {"wood"};
        CHECK(data::load_mvtec((tmp.path / "mv").string(), lo).categories.size() == 1);
        lo.categories = {"glass"};
        CHECK_THROWS_WITH_AS(data::load_mvtec((tmp.path / "mv").string(), lo), doctest::Contains("glass"), IOError);
        fs::remove_all(tmp.path / "mv" / "wood" / "train" / "good");
        CHECK_THROWS_WITH_AS(data::load_mvtec((tmp.path / "mv").string()), doctest::Contains("train/good"), IOError);
    }
    SUBCASE("folder") {
        data::write_dataset(gen, (tmp.path / "fo").string(), "folder");
        data::Dataset ds = data::load_dataset("folder", (tmp.path / "fo" / "metal").string());
        REQUIRE(ds.categories.size() == 1);
        CHECK(ds.categories[0].pool.size() == 6);  // pool + normal test parts, all in good/
        CHECK(ds.categories[0].pool_rest_is_test);
        CHECK(ds.categories[0].test.size() == 4);
        fs::create_directories(tmp.path / "empty");
        CHECK_THROWS_WITH_AS(data::load_folder((tmp.path / "empty").string(), {}), doctest::Contains("no image files"), IOError);
        CHECK_THROWS_WITH_AS(data::load_folder((tmp.path / "nothere").string(), {}), doctest::Contains("does not exist"), IOError);
    }
    SUBCASE("magnetic-tile") {
        const fs::path r = tmp.path / "mt";
        for (const char* d : {"MT_Free", "MT_Crack", "MT_Blowhole"}) fs::create_directories(r / d / "Imgs");
        Rng rng(2);
        for (int i = 0; i < 5; ++i) {
            io::write_file_atomic((r / "MT_Free" / "Imgs" / ("f" + std::to_string(i) + ".jpg")).string(),
                                  io::encode_jpeg(data::synthetic_part("stone", 40, rng), 90));
            io::write_png((r / "MT_Free" / "Imgs" / ("f" + std::to_string(i) + ".png")).string(), Tensor::zeros(Shape{1, 40, 40}));
        }
        for (const char* d : {"MT_Crack", "MT_Blowhole"}) {
            io::write_file_atomic((r / d / "Imgs" / "a.jpg").string(), io::encode_jpeg(data::synthetic_part("stone", 40, rng), 90));
            io::write_png((r / d / "Imgs" / "a.png").string(), Tensor::zeros(Shape{1, 40, 40}));  // the mask
        }
        data::Dataset ds = data::load_dataset("magnetic-tile", r.string());
        REQUIRE(ds.categories.size() == 1);
        CHECK(ds.categories[0].pool.size() == 5);  // masks are not images of the dataset
        CHECK(ds.categories[0].test.size() == 2);
        CHECK(ds.categories[0].test[0].kind == "Blowhole");
        CHECK(ds.categories[0].pool_rest_is_test);
    }
    SUBCASE("cifar10 with generated corruptions") {
        const fs::path r = tmp.path / "cifar";
        Rng rng(4);
        for (const char* cls : {"cat", "dog"})
            for (const char* split : {"train", "test"}) {
                fs::create_directories(r / split / cls);
                for (int i = 0; i < 3; ++i)
                    io::write_png((r / split / cls / (std::to_string(i) + ".png")).string(), data::synthetic_part("fabric", 32, rng));
            }
        data::LoadOptions lo;
        lo.test_limit = 2;
        data::Dataset ds = data::load_cifar10(r.string(), lo);
        REQUIRE(ds.categories.size() == 2);
        CHECK(ds.categories[0].pool.size() == 3);
        CHECK(ds.categories[0].test.size() == 2 + 9 * 2);
        const auto& s = ds.categories[0].test.back();
        CHECK(s.label == 1);
        CHECK(s.kind == "jpeg");
        Tensor a = data::materialize(s), b = data::materialize(s);
        CHECK(max_abs(a, b) == 0.0);
        CHECK(diff_rms(a, io::load_image(s.path)) > 1e-3);
        lo.corruptions = {"snow"};
        CHECK_THROWS_WITH_AS(data::load_cifar10(r.string(), lo), doctest::Contains("snow"), Error);
    }
    SUBCASE("aitex: seeded patches, defect patches on the mask") {
        const fs::path r = tmp.path / "aitex";
        fs::create_directories(r / "NODefect_images" / "2311694-2040n7u");
        fs::create_directories(r / "Defect_images");
        fs::create_directories(r / "Mask_images");
        Rng rng(5);
        io::write_png((r / "NODefect_images" / "2311694-2040n7u" / "0001_000_05.png").string(), Tensor::full(Shape{1, 256, 600}, 0.5f));
        io::write_png((r / "Defect_images" / "0044_019_04.png").string(), Tensor::full(Shape{1, 256, 600}, 0.5f));
        Tensor mask = Tensor::zeros(Shape{1, 256, 600});
        for (int64_t y = 100; y < 110; ++y)
            for (int64_t x = 500; x < 520; ++x) mask.data()[y * 600 + x] = 1.0f;
        io::write_png((r / "Mask_images" / "0044_019_04_mask.png").string(), mask);
        data::Dataset ds = data::load_aitex(r.string());
        REQUIRE(ds.categories.size() == 1);
        CHECK(ds.categories[0].pool.size() == 5);
        REQUIRE(ds.categories[0].test.size() == 1);
        const auto& d = ds.categories[0].test[0];
        CHECK(d.kind == "defect-019");
        CHECK_FALSE(d.mask_path.empty());
        Tensor p = data::materialize(d);
        CHECK(p.shape() == Shape{3, 256, 256});
        // the patch must contain the defect: x in [500, 520) lies inside [x0, x0 + 256)
        data::Sample m = d;
        m.path = m.mask_path;
        Tensor mp = data::materialize(m);
        double on = 0;
        for (int64_t i = 0; i < 256 * 256; ++i) on += mp.data()[i];
        CHECK(on > 50);
    }
}

TEST_CASE("materialize names the file that fails") {
    const std::string bad = test::data_dir() + "/images/truncated.png";
    std::vector<data::Sample> s = {data::file_sample(test::data_dir() + "/images/rgb8.png"), data::file_sample(bad)};
    CHECK_THROWS_WITH_AS(data::materialize(s), doctest::Contains("truncated.png"), IOError);
}

TEST_CASE("protocol and reports on a small generated dataset") {
    data::SyntheticOptions so;
    so.products = {"wood", "stone"};
    so.size = 32;
    so.pool = 6;
    so.test_normal = 4;
    so.test_per_defect = 2;
    data::Dataset ds = data::synthetic_dataset(so);
    eval::ProtocolOptions po;
    po.detector.width = 0.125f;
    po.detector.resolution = 32;
    po.detector.adapt = false;
    po.detector.n_augment = 2;
    po.shots = {2, 3};
    po.seeds = 2;
    po.gallery = 2;
    po.thumbnail = 24;
    int64_t calls = 0;
    eval::EvalResult r = eval::run_protocol(ds, po, [&](const eval::ProtocolProgress& p) {
        ++calls;
        CHECK(p.run < p.runs);
    });
    CHECK(calls > 0);
    REQUIRE(r.runs.size() == 8);
    for (const auto& x : r.runs) {
        CHECK(x.scores.size() == 12);  // 4 normal + 8 anomalous (the pool is not tested)
        CHECK(x.auroc >= 0.0);
        CHECK(x.auroc <= 1.0);
        CHECK(x.auroc == doctest::Approx(eval::auroc(x.scores, x.labels)));
        CHECK(x.gallery.size() == (x.shots == 3 && x.seed == 0 ? 4u : 0u));
        for (const auto& g : x.gallery) CHECK(g.map_png.empty() == (x.scorer == "global"));  // maps of the patch scorers
    }
    // the same seed draws the same shots and gives the same scores
    eval::EvalResult again = eval::run_protocol(ds, po);
    CHECK(again.runs[3].scores == r.runs[3].scores);
    auto sum = r.summary();
    REQUIRE(sum.size() == 6);  // 2 categories x 2 shots + 2 mean rows
    CHECK(sum[0].category == "wood");
    CHECK(sum[0].runs == 2);
    CHECK(sum[0].mean == doctest::Approx(50.0 * (r.runs[0].auroc + r.runs[1].auroc)));
    CHECK(sum.back().category == "mean");
    const auto kinds = r.by_kind();
    REQUIRE(kinds.size() == 8);  // crack, hole, scratch, stain x 2 shot counts
    CHECK(kinds[0].category == "crack");
    CHECK(kinds[0].runs == 4);   // 2 categories x 2 seeds
    for (const auto& k : kinds) CHECK((k.mean >= 0.0 && k.mean <= 100.0));

    TempDir tmp("report");
    eval::ReportInfo info;
    info.title = "test report <&>";
    info.config_json = R"({"a": 1})";
    info.references = {{"mean", 3, 77.7, "paper"}};
    const std::string dir = (tmp.path / "rep").string();
    eval::write_report(dir, r, info);
    const std::string html = io::read_file(dir + "/report.html");
    CHECK(html.find("test report &lt;&amp;&gt;") != std::string::npos);
    CHECK(html.find("<svg class=\"roc\"") != std::string::npos);
    CHECK(html.find("<svg class=\"hist\"") != std::string::npos);
    CHECK(html.find("data:image/png;base64,iVBORw0KGgo") != std::string::npos);
    CHECK(html.find("(paper 77.70)") != std::string::npos);
    CHECK(html.find("<table id=\"kinds\">") != std::string::npos);
    const std::string md = io::read_file(dir + "/report.md");
    CHECK(md.find("| wood |") != std::string::npos);
    CHECK(md.find("| mean |") != std::string::npos);
    const std::string js = io::read_file(dir + "/report.json");
    CHECK(js.find("\"fsad-report\"") != std::string::npos);
    // a second write replaces the folder as a whole and leaves no temporary folders
    info.title = "second";
    eval::write_report(dir, r, info);
    CHECK(io::read_file(dir + "/report.html").find("<title>second</title>") != std::string::npos);
    int entries = 0;
    for (const auto& e : fs::directory_iterator(tmp.path)) entries += e.exists();
    CHECK(entries == 1);
    // a report over a file is refused and the file is kept
    io::write_file_atomic((tmp.path / "file").string(), "keep");
    CHECK_THROWS_WITH_AS(eval::write_report((tmp.path / "file").string(), r, info), doctest::Contains("not a folder"), IOError);
    CHECK(io::read_file((tmp.path / "file").string()) == "keep");
}

TEST_CASE("protocol refuses impossible settings with the category named") {
    data::SyntheticOptions so;
    so.products = {"metal"};
    so.size = 32;
    so.pool = 3;
    data::Dataset ds = data::synthetic_dataset(so);
    eval::ProtocolOptions po;
    po.detector.width = 0.125f;
    po.detector.resolution = 32;
    po.detector.adapt = false;
    po.shots = {5};
    po.seeds = 1;
    CHECK_THROWS_WITH_AS(eval::run_protocol(ds, po), doctest::Contains("'metal' has 3 normal images"), Error);
}

TEST_CASE("base64") {
    CHECK(eval::base64("") == "");
    CHECK(eval::base64("f") == "Zg==");
    CHECK(eval::base64("fo") == "Zm8=");
    CHECK(eval::base64("foo") == "Zm9v");
    CHECK(eval::base64("foobar") == "Zm9vYmFy");
}

TEST_CASE("protocol: the imbalanced test sets of Table 8 are drawn per seed") {
    data::SyntheticOptions so;
    so.products = {"stone"};
    so.size = 32;
    so.pool = 6;
    so.test_normal = 10;
    so.test_per_defect = 3;  // 12 anomalies
    data::Dataset ds = data::synthetic_dataset(so);
    eval::ProtocolOptions po;
    po.detector.width = 0.125f;
    po.detector.resolution = 32;
    po.detector.adapt = false;
    po.detector.n_augment = 2;
    po.shots = {2};
    po.seeds = 2;
    po.gallery = 0;
    po.test_normals = 8;
    po.test_anomalies = 3;
    eval::EvalResult r = eval::run_protocol(ds, po);
    REQUIRE(r.runs.size() == 2);
    for (const auto& x : r.runs) {
        int an = 0;
        for (int l : x.labels) an += l;
        CHECK(an == 3);
        CHECK(x.labels.size() == 11u);
    }
    CHECK(r.runs[0].names != r.runs[1].names);  // different seeds draw different test sets
    po.test_anomalies = 13;
    CHECK_THROWS_WITH_AS(eval::run_protocol(ds, po), doctest::Contains("12 anomalous test images; 13 asked"), Error);
}

TEST_CASE("cifar100: fine classes are grouped into the 20 superclasses") {
    CHECK(data::cifar100_superclass("maple_tree") == "trees");
    CHECK(data::cifar100_superclass("trees") == "trees");
    CHECK(data::cifar100_superclass("pickup_truck") == "vehicles_1");
    CHECK(data::cifar100_superclass("airplane") == "");
    const fs::path r = fs::temp_directory_path() / ("fsad_test_c100_" + std::to_string(::getpid()));
    fs::remove_all(r);
    Rng rng(8);
    for (const char* cls : {"oak_tree", "pine_tree", "bus"})
        for (const char* split : {"train", "test"}) {
            fs::create_directories(r / split / cls);
            for (int i = 0; i < 2; ++i)
                io::write_png((r / split / cls / (std::to_string(i) + ".png")).string(), data::synthetic_part("wood", 32, rng));
        }
    data::LoadOptions lo;
    lo.corruptions = {"contrast"};
    data::Dataset ds = data::load_cifar100(r.string(), lo);
    REQUIRE(ds.categories.size() == 2);
    const auto& trees = ds.categories[0].name == "trees" ? ds.categories[0] : ds.categories[1];
    CHECK(trees.pool.size() == 4);
    CHECK(trees.test.size() == 8);  // 4 clean + 4 corrupted
    CHECK(trees.test[3].label == 0);
    CHECK(trees.test[4].label == 1);
    fs::create_directories(r / "train" / "airplane");
    fs::create_directories(r / "test" / "airplane");
    io::write_png((r / "train" / "airplane" / "0.png").string(), data::synthetic_part("wood", 32, rng));
    io::write_png((r / "test" / "airplane" / "0.png").string(), data::synthetic_part("wood", 32, rng));
    CHECK_THROWS_WITH_AS(data::load_cifar100(r.string(), lo), doctest::Contains("airplane"), IOError);
    fs::remove_all(r);
}

TEST_CASE("aitex without masks: image-level test, the maximum over 256x256 tiles") {
    const fs::path r = fs::temp_directory_path() / ("fsad_test_aitex_img_" + std::to_string(::getpid()));
    fs::remove_all(r);
    fs::create_directories(r / "NODefect_images" / "fabric1");
    fs::create_directories(r / "Defect_images");
    for (int i = 0; i < 5; ++i) {  // 256 x 600 (AITEX's are 256 x 4096)
        Tensor big = Tensor::empty(Shape{3, 256, 600});
        Rng g(static_cast<uint64_t>(i));
        for (int64_t j = 0; j < big.numel(); ++j) big.data()[j] = g.uniform(0.4f, 0.6f);
        io::write_png((r / "NODefect_images" / "fabric1" / ("000" + std::to_string(i) + "_000_01.png")).string(), big);
    }
    Tensor bad = Tensor::full(Shape{3, 256, 600}, 0.5f);
    for (int64_t y = 100; y < 140; ++y)
        for (int64_t x = 400; x < 440; ++x)
            for (int64_t c = 0; c < 3; ++c) bad.data()[(c * 256 + y) * 600 + x] = 0.0f;
    io::write_png((r / "Defect_images" / "0100_002_01.png").string(), bad);
    data::Dataset ds = data::load_aitex(r.string());
    REQUIRE(ds.categories.size() == 1);
    const auto& c = ds.categories[0];
    CHECK_FALSE(c.pool_rest_is_test);
    CHECK(c.pool.size() == 20);  // 4 images x 5 patches; the fifth image is held out
    REQUIRE(c.test.size() == 2);
    CHECK(c.test[0].tile == 256);
    CHECK(c.test[0].label == 0);
    CHECK(c.test[1].label == 1);
    CHECK(c.test[1].kind == "defect-002");
    CHECK(data::tiles(data::materialize(c.test[1]), 256).size() == 3);  // x at 0, 256, 344
    eval::ProtocolOptions po;
    po.detector.width = 0.125f;
    po.detector.resolution = 32;
    po.detector.adapt = false;
    po.detector.n_augment = 2;
    po.shots = {3};
    po.seeds = 1;
    po.gallery = 0;
    eval::EvalResult res = eval::run_protocol(ds, po);
    REQUIRE(res.runs.size() == 1);
    CHECK(res.runs[0].scores.size() == 2);
    // the image-level score is the largest of its tiles' scores
    Detector det(po.detector);
    std::vector<Tensor> shots;
    for (int i = 0; i < 3; ++i) shots.push_back(data::materialize(c.pool[static_cast<size_t>(i)]));
    det.fit(shots);
    const auto t = det.score(data::tiles(data::materialize(c.test[1]), 256));
    const auto s = eval::score_samples(det, {c.test[1]});
    CHECK(s[0] == *std::max_element(t.begin(), t.end()));
    fs::remove_all(r);
}

TEST_CASE("score_samples: the image cache gives the same scores and respects its budget") {
    data::SyntheticOptions so;
    so.products = {"wood"};
    so.size = 32;
    so.pool = 4;
    so.test_normal = 3;
    so.test_per_defect = 1;
    data::Dataset ds = data::synthetic_dataset(so);
    DetectorConfig c;
    c.backbone = nn::BackboneKind::ResNet18;
    c.scorer = Scorer::Global;
    c.width = 0.125f;
    c.resolution = 32;
    c.adapt = false;
    c.n_augment = 2;
    Detector det(c);
    det.fit(data::materialize(ds.categories[0].pool));
    const auto& test = ds.categories[0].test;
    eval::ImageCache cache;
    cache.budget = 3 * 32 * 32 * 4 * 4;  // room for four of the seven images
    const auto a = eval::score_samples(det, test, 3, {}, &cache);
    CHECK(cache.images.size() == 4);
    CHECK(cache.used <= cache.budget);
    const auto b = eval::score_samples(det, test, 3, {}, &cache);
    CHECK(a == b);
    CHECK(a == eval::score_samples(det, test, 3));  // without a cache
    const auto c2 = eval::score_samples(det, test, 2);  // other batches: the same up to rounding
    for (size_t i = 0; i < a.size(); ++i) CHECK(c2[i] == doctest::Approx(a[i]).epsilon(1e-5));
}
