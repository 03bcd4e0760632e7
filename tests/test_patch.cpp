// Patch scorers (method/patch.hpp): golden tests against PyTorch / scikit-learn / SciPy
// (tests/data/golden_patch.safetensors, tools/make_patch_golden.py), the coreset's definition and
// determinism, the pixel AUROC, the stage taps of the backbones, and the Detector's patch
// scorers and views end to end (maps, save/load, bad input).
#include <filesystem>

#include "golden.hpp"

using namespace fsad;
using namespace fsad::test;
namespace fs = std::filesystem;

namespace {
const io::SafeTensors& fixture() {
    static io::SafeTensors fx = io::read_safetensors(test::data_dir() + "/golden_patch.safetensors");
    return fx;
}


DetectorConfig tiny(Scorer s) {
    DetectorConfig c;
    c.backbone = nn::BackboneKind::MobileNetV2;
    c.width = 0.25f;
    c.resolution = 32;
    c.adapt = false;
    c.n_augment = 0;
    c.scorer = s;
    c.patch.map_sigma = 1.0;
    c.patch.coreset = 0.5;
    c.seed = 5;
    return c;
}
std::string tmp(const std::string& n) { return (fs::temp_directory_path() / ("fsad_patch_" + n)).string(); }
}  // namespace

TEST_CASE("golden patch: features, patch Gaussian, patch kNN and anomaly maps match PyTorch / scikit-learn / SciPy") {
    const auto& fx = fixture();
    const Tensor f = method::patch_features({fx.tensors.at("input.maps8"), fx.tensors.at("input.maps16")});
    check_vs_reference("patch.features", f, fx, "patch.features");
    const Tensor shot = method::patch_rows(method::patch_features({fx.tensors.at("input.shot8"), fx.tensors.at("input.shot16")}));
    const Tensor q = method::patch_rows(f);
    REQUIRE(q.dim(0) == 2 * 11 * 13);
    REQUIRE(q.dim(1) == 20);

    method::GaussianDensity g;
    method::GaussianOptions o;
    o.l2_normalize = false;
    g.fit(shot, o);
    const Tensor gs = g.score(q);
    check_vs_reference("gauss.scores", gs, fx, "gauss.scores");

    method::PatchKnn knn;
    knn.fit(shot);
    const Tensor ks = knn.score(q);
    check_vs_reference("knn.scores", ks, fx, "knn.scores");

    // the maps: each image's 11 x 13 scores -> 88 x 104, sigma 4
    for (const char* which : {"map.gauss", "map.knn"}) {
        const Tensor& s = std::string(which) == "map.gauss" ? gs : ks;
        std::vector<Tensor> per;
        for (int64_t i = 0; i < 2; ++i) per.push_back(method::anomaly_map(s.data() + i * 143, 11, 13, 88, 104, 4.0).reshape(Shape{1, 88, 104}));
        check_vs_reference(which, ops::concat(per, 0), fx, which);
    }
    // the fixture's "defect" (image 1, rows 4-6, columns 5-8) is where both maps peak
    for (const Tensor& s : {gs, ks}) {
        const float* b = s.data() + 143;
        const int64_t at = std::max_element(b, b + 143) - b;
        CHECK(at / 13 >= 3);
        CHECK(at / 13 <= 7);
        CHECK(at % 13 >= 4);
        CHECK(at % 13 <= 9);
    }
}

TEST_CASE("patch: a wrong pooling or interpolation is caught by the golden features") {
    const auto& fx = fixture();
    // pool 1 (no local aggregation) must be far outside the fixture's tolerance
    const Tensor f = method::patch_features({fx.tensors.at("input.maps8"), fx.tensors.at("input.maps16")}, 1);
    const std::vector<float> a = f.to_vector(), b = fx.tensors.at("patch.features").to_vector();
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
    CHECK(worst > 1e-2);
}

TEST_CASE("patch: anomaly_map without blur is the bilinear upsampling; a constant map stays constant") {
    const std::vector<float> s{1, 2, 3, 4};
    const Tensor m = method::anomaly_map(s.data(), 2, 2, 2, 2, 0.0);
    CHECK(m.to_vector() == s);
    const std::vector<float> c(6, 2.5f);
    const Tensor k = method::anomaly_map(c.data(), 2, 3, 17, 23, 4.0);
    CHECK(k.dim(0) == 17);
    CHECK(k.dim(1) == 23);
    for (float v : k.to_vector()) CHECK(v == doctest::Approx(2.5f).epsilon(1e-6));
    CHECK_THROWS_WITH_AS(method::anomaly_map(c.data(), 0, 3, 4, 4, 1.0), doctest::Contains("empty"), Error);
}

namespace {
// greedy_coreset's picks `a` of the rows of x [M, C] against a double-precision brute force: the
// picks are distinct and each after the first is (to 1e-5) the row farthest from the earlier
// ones. Returns every row's squared distance to its nearest pick.
std::vector<double> check_farthest_picks(const Tensor& x, const std::vector<int64_t>& a) {
    const int64_t M = x.dim(0), C = x.dim(1);
    std::vector<int64_t> sorted = a;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());  // distinct
    std::vector<double> mind(static_cast<size_t>(M), 1e300);
    for (size_t t = 0; t < a.size(); ++t) {
        if (t > 0) {
            const double best = *std::max_element(mind.begin(), mind.end());
            CHECK(mind[static_cast<size_t>(a[t])] == doctest::Approx(best).epsilon(1e-5));
        }
        const float* c = x.data() + a[t] * C;
        for (int64_t i = 0; i < M; ++i) {
            double s = 0;
            for (int64_t k = 0; k < C; ++k) s += std::pow(double(x.data()[i * C + k]) - c[k], 2);
            mind[static_cast<size_t>(i)] = std::min(mind[static_cast<size_t>(i)], s);
        }
    }
    return mind;
}
}  // namespace

TEST_CASE("patch: greedy coreset picks the farthest point each time, deterministically per seed") {
    const Tensor x = randn(Shape{200, 6}, 11);
    const auto a = method::greedy_coreset(x, 25, 3), b = method::greedy_coreset(x, 25, 3);
    CHECK(a == b);
    REQUIRE(a.size() == 25);
    check_farthest_picks(x, a);
    const auto all = method::greedy_coreset(x, 500, 3);
    CHECK(all.size() == 200);
    CHECK(method::greedy_coreset(x, 25, 4) != a);  // another seed starts elsewhere
}

TEST_CASE("patch: greedy coreset on clustered rows with duplicates (where the triangle-inequality skip acts) "
          "still picks the farthest row each time") {
    // 16 tight clusters of 250 rows in 24-d, every fifth row an exact copy of the row before it:
    // once each cluster holds a centre, most rows are skipped; a wrongly skipped row keeps a
    // too-large minimum and would be picked although another row lies farther from the centres
    const int64_t M = 4000, C = 24, m = 400;
    const Tensor centres = randn(Shape{16, C}, 5), noise = randn(Shape{M, C}, 6);
    Tensor x = Tensor::empty(Shape{M, C});
    for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < C; ++k)
            x.data()[i * C + k] = i % 5 == 4 ? x.data()[(i - 1) * C + k]
                                             : 3.0f * centres.data()[(i % 16) * C + k] + 0.3f * noise.data()[i * C + k];
    const auto a = method::greedy_coreset(x, m, 9);
    REQUIRE(a.size() == static_cast<size_t>(m));
    const std::vector<double> mind = check_farthest_picks(x, a);
    // every cluster holds centres: the largest remaining squared distance is within-cluster (about
    // 2 x 24 x 0.3^2 = 4.3 for two rows of one cluster), far below the clusters' spacing (~430)
    CHECK(*std::max_element(mind.begin(), mind.end()) < 10);
}

TEST_CASE("patch: kNN distances equal brute force; bad banks are refused") {
    const Tensor bank = randn(Shape{300, 9}, 1), q = randn(Shape{1100, 9}, 2);  // > one 512-row chunk
    method::PatchKnn k;
    k.fit(bank);
    const std::vector<float> got = k.score(q).to_vector();
    for (int64_t i = 0; i < 1100; i += 37) {
        double best = 1e300;
        for (int64_t j = 0; j < 300; ++j) {
            double s = 0;
            for (int64_t c = 0; c < 9; ++c) s += std::pow(double(q.data()[i * 9 + c]) - bank.data()[j * 9 + c], 2);
            best = std::min(best, s);
        }
        CHECK(got[static_cast<size_t>(i)] == doctest::Approx(std::sqrt(best)).epsilon(1e-5));
    }
    Tensor bad = bank.clone();
    bad.data()[17] = std::nanf("");
    method::PatchKnn b;
    CHECK_THROWS_WITH_AS(b.fit(bad), doctest::Contains("non-finite"), Error);
    CHECK_THROWS_AS(k.score(randn(Shape{4, 8}, 3)), Error);
}

TEST_CASE("eval: auroc_pos_neg equals the labelled AUROC, ties counted one half") {
    Rng rng(9);
    std::vector<float> neg, pos, all;
    std::vector<int> lab;
    for (int i = 0; i < 500; ++i) {
        const float v = std::round(rng.normal(0, 1) * 4) / 4;  // many ties
        neg.push_back(v);
        all.push_back(v);
        lab.push_back(0);
    }
    for (int i = 0; i < 120; ++i) {
        const float v = std::round(rng.normal(0.7f, 1) * 4) / 4;
        pos.push_back(v);
        all.push_back(v);
        lab.push_back(1);
    }
    CHECK(eval::auroc_pos_neg(neg, pos) == doctest::Approx(eval::auroc(all, lab)).epsilon(1e-12));
    CHECK(eval::auroc_pos_neg({1, 2}, {3}) == 1.0);
    CHECK(eval::auroc_pos_neg({1, 2}, {2}) == 0.75);
    CHECK_THROWS_AS(eval::auroc_pos_neg({}, {1}), Error);
    // the sorted-negatives form: the same number; unsorted negatives are refused, not miscounted
    std::vector<float> sorted = neg;
    std::sort(sorted.begin(), sorted.end());
    CHECK(eval::auroc_sorted_neg(sorted, pos) == eval::auroc_pos_neg(neg, pos));
    CHECK_THROWS_AS(eval::auroc_sorted_neg({2, 1}, {3}), Error);
    CHECK_THROWS_AS(eval::auroc_sorted_neg({1}, {}), Error);
}

TEST_CASE("eval: label_regions finds 8-connected components") {
    // two blobs joined only diagonally are one region; an isolated pixel is another
    const std::vector<uint8_t> m{1, 0, 0, 0, 0,  //
                                 0, 1, 0, 0, 1,  //
                                 0, 0, 0, 0, 0,  //
                                 1, 1, 0, 0, 0};
    std::vector<int32_t> id;
    REQUIRE(eval::label_regions(m.data(), 4, 5, id) == 3);
    CHECK(id[0] == 0);
    CHECK(id[6] == 0);
    CHECK(id[9] == 1);
    CHECK(id[15] == 2);
    CHECK(id[16] == 2);
    CHECK(id[1] == -1);
    CHECK(eval::label_regions(m.data(), 0, 0, id) == 0);
}

namespace {
// PRO by definition: every distinct score as a threshold, the (FPR, PRO) points joined by
// straight lines, integrated with trapezoids up to max_fpr (interpolated), divided by max_fpr
double pro_brute(const std::vector<float>& normal, const std::vector<float>& defect, const std::vector<int32_t>& region,
                 double max_fpr) {
    std::vector<float> t(normal);
    t.insert(t.end(), defect.begin(), defect.end());
    std::sort(t.begin(), t.end(), std::greater<float>());
    t.erase(std::unique(t.begin(), t.end()), t.end());
    const int32_t nr = *std::max_element(region.begin(), region.end()) + 1;
    std::vector<std::pair<double, double>> pts{{0.0, 0.0}};
    for (float th : t) {
        double fp = 0;
        for (float v : normal) fp += v >= th;
        std::vector<double> hit(nr, 0), size(nr, 0);
        for (size_t i = 0; i < defect.size(); ++i) {
            size[region[i]] += 1;
            hit[region[i]] += defect[i] >= th;
        }
        double pro = 0;
        for (int32_t r = 0; r < nr; ++r) pro += hit[r] / size[r];
        pts.push_back({fp / static_cast<double>(normal.size()), pro / nr});
    }
    double area = 0;
    for (size_t i = 1; i < pts.size(); ++i) {
        auto [x0, y0] = pts[i - 1];
        auto [x1, y1] = pts[i];
        if (x0 >= max_fpr) break;
        if (x1 > max_fpr) {
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0);
            x1 = max_fpr;
        }
        area += (x1 - x0) * 0.5 * (y0 + y1);
    }
    return area / max_fpr;
}
}  // namespace

TEST_CASE("eval: pro_auc is the area under the per-region overlap curve up to the FPR limit") {
    // by hand: thresholds 5 (fpr 0, pro 1/2), 4 (0, 3/4), 3 (1/4, 3/4), 2 (1/2: the limit) -> 0.75
    CHECK(eval::pro_auc({0, 1, 2, 3}, {5, 0.5f, 4}, {0, 1, 1}, 0.5) == doctest::Approx(0.75));
    // a perfect map: every defect pixel above every normal one
    CHECK(eval::pro_auc({0, 1, 2}, {3, 4}, {0, 1}) == doctest::Approx(1.0));
    // against the definition, with ties, several region sizes and FPR limits
    Rng rng(3);
    std::vector<float> normal, defect;
    std::vector<int32_t> region;
    for (int i = 0; i < 400; ++i) normal.push_back(std::round(rng.normal(0, 1) * 8) / 8);
    for (int r = 0; r < 7; ++r)
        for (int i = 0; i < 1 + 9 * r; ++i) {
            defect.push_back(std::round(rng.normal(0.4f * static_cast<float>(r) - 0.5f, 1) * 8) / 8);
            region.push_back(r);
        }
    for (double lim : {0.3, 0.05, 1.0}) {
        CAPTURE(lim);
        CHECK(eval::pro_auc(normal, defect, region, lim) == doctest::Approx(pro_brute(normal, defect, region, lim)).epsilon(1e-7));
    }
    std::vector<float> ascending = normal;  // normals given already sorted (as run_protocol does): the same PRO
    std::sort(ascending.begin(), ascending.end());
    CHECK(eval::pro_auc(ascending, defect, region) == eval::pro_auc(normal, defect, region));
    CHECK_THROWS_AS(eval::pro_auc({}, {1}, {0}), Error);
    CHECK_THROWS_AS(eval::pro_auc({0}, {1}, {}), Error);
    CHECK_THROWS_AS(eval::pro_auc({0}, {1}, {0}, 0.0), Error);
}

TEST_CASE("protocol: a dataset with masks gets pixel AUROC, PRO and gallery maps") {
    // a small MVTec layout: striped textures, the anomalies a bright diagonal scratch (|x - y| < 2)
    TempDir td("mvtec-masks");
    const fs::path root = td.path / "tex";
    // two kinds with the same masks on different images: "scratch" and "mark"
    for (const char* d : {"train/good", "test/good", "test/scratch", "ground_truth/scratch", "test/mark", "ground_truth/mark"})
        fs::create_directories(root / d);
    for (int i = 0; i < 5; ++i) io::write_png((root / "train/good" / (std::to_string(i) + ".png")).string(), texture(10 + i, false));
    for (int i = 0; i < 2; ++i) {
        io::write_png((root / "test/good" / (std::to_string(i) + ".png")).string(), texture(20 + i, false));
        Tensor m = Tensor::empty(Shape{1, 48, 48});
        for (int64_t y = 0; y < 48; ++y)
            for (int64_t x = 0; x < 48; ++x) m.data()[y * 48 + x] = std::llabs(x - y) < 2 ? 1.0f : 0.0f;
        for (const char* kind : {"scratch", "mark"}) {
            const int seed = (kind[0] == 's' ? 30 : 40) + i;
            io::write_png((root / "test" / kind / (std::to_string(i) + ".png")).string(), texture(seed, true));
            io::write_png((root / "ground_truth" / kind / (std::to_string(i) + "_mask.png")).string(), m);
        }
    }
    eval::ProtocolOptions po;
    po.detector = tiny(Scorer::PatchGauss);
    po.detector.resolution = 64;
    po.detector.patch.second_view = 0.5;  // two views: the maps summed at the first view's size
    po.shots = {3};
    po.seeds = 2;
    po.gallery = 1;
    po.thumbnail = 24;
    const eval::EvalResult r = eval::run_protocol(data::load_mvtec(td.path.string()), po);
    REQUIRE(r.runs.size() == 2);
    for (const auto& x : r.runs) {
        CHECK(x.second_view == 32);
        CHECK(x.pixel_images == 6);
        CHECK((x.pixel_auroc > 0.0 && x.pixel_auroc <= 1.0));
        CHECK((x.pro >= 0.0 && x.pro <= 1.0));
        // each kind's pixels against every normal pixel; both kinds have as many defect pixels (the
        // same masks on maps of one size), so the pixel AUROC is the mean of the two
        REQUIRE(x.pixel_auroc_by_kind.size() == 2);
        const double scratch = x.pixel_auroc_by_kind.at("scratch"), mark = x.pixel_auroc_by_kind.at("mark");
        CHECK((scratch > 0.0 && scratch <= 1.0));
        CHECK((mark > 0.0 && mark <= 1.0));
        CHECK(x.pixel_auroc == doctest::Approx(0.5 * (scratch + mark)).epsilon(1e-12));
    }
    const auto sum = r.summary();
    REQUIRE(!sum.empty());
    CHECK(sum[0].pro_mean == doctest::Approx(50.0 * (r.runs[0].pro + r.runs[1].pro)));
    const auto kinds = r.by_kind();
    REQUIRE(kinds.size() == 2);
    for (const auto& k : kinds)
        CHECK(k.pixel_mean == doctest::Approx(50.0 * (r.runs[0].pixel_auroc_by_kind.at(k.category) +
                                                      r.runs[1].pixel_auroc_by_kind.at(k.category))));
    // the gallery's anomaly map thumbnails: one per kept image, in the report
    REQUIRE(r.runs[0].gallery.size() == 2);
    for (const auto& g : r.runs[0].gallery) CHECK(g.map_png.substr(1, 3) == "PNG");
    const std::string dir = (td.path / "rep").string();
    eval::write_report(dir, r, {});
    CHECK(io::read_file(dir + "/report.html").find("alt=\"anomaly map of ") != std::string::npos);
    CHECK(io::read_file(dir + "/report.md").find("; PRO ") != std::string::npos);
    CHECK(io::read_file(dir + "/report.md").find("; pixel ") != std::string::npos);  // the by-kind table
    CHECK(io::read_file(dir + "/report.json").find("\"pixel_auroc_by_kind\": {") != std::string::npos);
    CHECK(io::read_file(dir + "/report.json").find("\"second_view\": {") != std::string::npos);
}

TEST_CASE("backbones: forward_stages gives forward_features' stage maps and stops there") {
    NoGradGuard ng;
    for (auto kind : {nn::BackboneKind::ResNet18, nn::BackboneKind::MobileNetV2}) {
        auto net = nn::make_backbone({kind, 0.25f}, 1);
        net->eval();
        const Tensor x = randn(Shape{2, 3, 40, 56}, 4);
        const auto full = net->forward_features(Var(x), true);
        const auto st = net->patch_stages();
        REQUIRE(st.size() == 2);
        const auto part = net->forward_stages(Var(x), st.back());
        REQUIRE(static_cast<int64_t>(part.size()) == st.back() + 1);
        for (size_t i = 0; i < part.size(); ++i) CHECK(part[i].value().to_vector() == full.stages[i].value().to_vector());
        // the taps are at strides 8 and 16
        CHECK(part[static_cast<size_t>(st[0])].value().dim(2) == 5);
        CHECK(part[static_cast<size_t>(st[1])].value().dim(3) == 4);
        CHECK_THROWS_AS(net->forward_stages(Var(x), net->num_stages()), Error);
    }
}

TEST_CASE("detector: patch scorers give maps at the image's size whose maximum is the score; save/load keeps them") {
    std::vector<Tensor> shots{texture(1, false), texture(2, false), texture(3, false)};
    std::vector<Tensor> test{texture(4, false), texture(5, true), texture(6, true, 40, 70)};
    for (Scorer s : {Scorer::PatchGauss, Scorer::PatchKnn, Scorer::PatchSum}) {
        CAPTURE(to_string(s));
        Detector d(tiny(s));
        d.fit(shots);
        CHECK(d.threshold() > 0);
        const std::vector<float> sc = d.score(test);
        const auto views = d.score_views(test, true);
        REQUIRE(views.maps.size() == 3);
        for (size_t i = 0; i < 3; ++i) {
            CHECK(views.scores[i] == sc[i]);
            const Tensor& m = views.maps[i];
            CHECK(m.dim(0) == 32);  // the shots view of square shots: 32 x 32
            CHECK(*std::max_element(m.data(), m.data() + m.numel()) == sc[i]);
        }
        const auto maps = d.score_map(test);
        CHECK(maps[2].dim(0) == 40);
        CHECK(maps[2].dim(1) == 70);
        CHECK(sc[1] > sc[0]);  // the scratch
        const std::string p = tmp(to_string(s) + ".fsad");
        d.save(p);
        Detector l = Detector::load(p);
        CHECK(l.config().scorer == s);
        CHECK(l.threshold() == d.threshold());
        FSAD_CHECK_CLOSE("loaded scores", l.score(test), sc, 1e-3, 1e-4);  // mu and L stored as float32
        fs::remove(p);
    }
}

TEST_CASE("detector: patch-sum is the two patch scorers' maps, each over its own threshold, summed") {
    const std::vector<Tensor> shots{texture(1, false), texture(2, false), texture(3, false), texture(7, false)};
    const std::vector<Tensor> test{texture(4, false), texture(5, true), texture(6, true, 40, 70)};
    Detector sum(tiny(Scorer::PatchSum)), gauss(tiny(Scorer::PatchGauss)), knn(tiny(Scorer::PatchKnn));
    sum.fit(shots);
    gauss.fit(shots);
    knn.fit(shots);
    CHECK(gauss.patch_scale() == std::array<double, 2>{0, 0});
    // the divisors are the two scorers' prediction bounds over their held-out scores (the same
    // held-out shots, the same fits), without the spread prior
    REQUIRE(gauss.held_out_scores().size() == shots.size());
    const double sg = prediction_bound(gauss.held_out_scores(), 0.99), sk = prediction_bound(knn.held_out_scores(), 0.99);
    CHECK(sum.patch_scale()[0] == sg);
    CHECK(sum.patch_scale()[1] == sk);
    // and each scorer's threshold is its held-out scores' bound with the spread prior
    CHECK(gauss.threshold() == prediction_bound(gauss.held_out_scores(), 0.99, 0.15, 5));
    CHECK(sum.threshold() == prediction_bound(sum.held_out_scores(), 0.99, 0.15, 5));
    const auto ms = sum.score_views(test, true), mg = gauss.score_views(test, true), mk = knn.score_views(test, true);
    for (size_t i = 0; i < test.size(); ++i) {
        CAPTURE(i);
        std::vector<float> want(static_cast<size_t>(mg.maps[i].numel()));
        for (size_t p = 0; p < want.size(); ++p)  // upsampling and blur are linear: the map of the sum
            want[p] = static_cast<float>(mg.maps[i].data()[p] / sg + mk.maps[i].data()[p] / sk);
        FSAD_CHECK_CLOSE("patch-sum map", ms.maps[i].to_vector(), want, 1e-4, 1e-5);
    }
    // each held-out shot's sum is at most its two parts over their divisors added (the maximum of a
    // sum is at most the sum of the maxima), and at least the larger of them
    REQUIRE(sum.held_out_scores().size() == shots.size());
    for (size_t i = 0; i < shots.size(); ++i) {
        const double g = gauss.held_out_scores()[i] / sg, k = knn.held_out_scores()[i] / sk;
        CHECK(sum.held_out_scores()[i] <= (g + k) * (1 + 1e-5));
        CHECK(sum.held_out_scores()[i] >= std::max(g, k) * (1 - 1e-5));
    }
    CHECK(ms.scores[1] > ms.scores[0]);  // the scratch
    // the divisors travel in the model file
    const std::string p = tmp("sum.fsad");
    sum.save(p);
    CHECK(Detector::load(p).patch_scale()[1] == doctest::Approx(sk).epsilon(1e-6));
    fs::remove(p);
}

TEST_CASE("detector: a second view adds its scores and maps, each view over its own threshold; the model file keeps it") {
    const std::vector<Tensor> shots{texture(1, false), texture(2, false), texture(3, false), texture(7, false)};
    const std::vector<Tensor> test{texture(4, false), texture(5, true), texture(6, true, 40, 70)};
    DetectorConfig c = tiny(Scorer::Auto);
    c.resolution = 64;
    c.patch.second_view = 0;
    DetectorConfig c64 = c, c32 = c;
    c32.resolution = 32;
    c.patch.second_view = 0.5;  // 32 px
    Detector two(c), one64(c64), one32(c32);
    two.fit(shots);
    one64.fit(shots);
    one32.fit(shots);
    REQUIRE(two.second_view() != nullptr);
    CHECK(one64.second_view() == nullptr);
    CHECK(one64.view_scale() == std::array<double, 2>{0, 0});
    const Detector& second = *two.second_view();
    CHECK(second.config().resolution == 32);
    CHECK(second.config().patch.second_view == 0);
    CHECK(two.config().patch.second_view == 0.5);
    CHECK(second.config().scorer == two.config().scorer);  // the scorer the first view chose
    // each view is the detector fitted at its resolution alone (the same fits, bit for bit), and
    // its threshold is that view's divisor
    CHECK(two.view_scale()[0] == one64.threshold());
    CHECK(second.threshold() == one32.threshold());
    CHECK(two.view_scale()[1] == one32.threshold());
    CHECK(second.held_out_scores() == one32.held_out_scores());
    // the threshold: the prediction bound over the held-out shots' sums
    REQUIRE(two.held_out_scores().size() == shots.size());
    for (size_t i = 0; i < shots.size(); ++i)
        CHECK(two.held_out_scores()[i] == doctest::Approx(one64.held_out_scores()[i] / one64.threshold() +
                                                          one32.held_out_scores()[i] / one32.threshold())
                                              .epsilon(1e-6));
    CHECK(two.threshold() == prediction_bound(two.held_out_scores(), 0.99, 0.15, 5));
    // scores and maps: the two views', each over its threshold, summed (the second map upsampled
    // to the first view's size); the map's maximum is at most the score
    const auto s2 = two.score_views(test, true), a = one64.score_views(test, true), b = one32.score_views(test, true);
    REQUIRE(s2.maps.size() == test.size());
    for (size_t i = 0; i < test.size(); ++i) {
        CAPTURE(i);
        CHECK(s2.scores[i] == doctest::Approx(a.scores[i] / one64.threshold() + b.scores[i] / one32.threshold()).epsilon(1e-5));
        const Tensor& m = s2.maps[i];
        REQUIRE(m.dim(0) == 64);
        REQUIRE(b.maps[i].dim(0) == 32);
        const Tensor up = io::resize_bilinear(b.maps[i].reshape(Shape{1, 32, 32}), 64, 64);
        std::vector<float> want(static_cast<size_t>(m.numel()));
        for (size_t p = 0; p < want.size(); ++p)
            want[p] = static_cast<float>(a.maps[i].data()[p] / one64.threshold() + up.data()[p] / one32.threshold());
        FSAD_CHECK_CLOSE("two views' map", m.to_vector(), want, 1e-4, 1e-5);
        CHECK(*std::max_element(m.data(), m.data() + m.numel()) <= s2.scores[i] * (1 + 1e-5));
    }
    CHECK(s2.scores[1] > s2.scores[0]);  // the scratch
    CHECK(two.score(test) == s2.scores);
    const auto maps = two.score_map(test);
    CHECK((maps[2].dim(0) == 40 && maps[2].dim(1) == 70));
    // the model file: version 3 with the second view's scorer and configuration; one view stays version 2
    const std::string p = tmp("two_views.fsad"), p1 = tmp("one_view.fsad");
    two.save(p);
    one64.save(p1);
    CHECK(io::read_safetensors(p).metadata.at("version") == "3");
    CHECK(io::read_safetensors(p1).metadata.at("version") == "2");
    const Detector l = Detector::load(p);
    REQUIRE(l.second_view() != nullptr);
    CHECK(l.second_view()->config().resolution == 32);
    CHECK(l.threshold() == two.threshold());
    CHECK(l.view_scale()[1] == doctest::Approx(two.view_scale()[1]).epsilon(1e-6));
    FSAD_CHECK_CLOSE("loaded two views' scores", l.score(test), s2.scores, 1e-3, 1e-4);
    CHECK(Detector::load(p1).second_view() == nullptr);
    CHECK(Detector::load(p1).config().patch.second_view == 0);
    fs::remove(p);
    fs::remove(p1);
    // a refit of one view drops the second; the global scorer keeps one view and says so
    DetectorConfig g = tiny(Scorer::Global);
    g.resolution = 64;
    g.patch.second_view = 0.5;
    Detector global(g);
    global.fit(shots);
    CHECK(global.second_view() == nullptr);
    CHECK(global.config().patch.second_view == 0);
    // out of range: a clear error naming the option
    c.patch.second_view = 0.05;
    CHECK_THROWS_WITH_AS(Detector{c}, doctest::Contains("second_view"), Error);
}

TEST_CASE("detector: the keep view keeps the aspect ratio up to max_aspect") {
    DetectorConfig c = tiny(Scorer::PatchGauss);
    c.view = View::Keep;
    c.max_aspect = 3.0;
    Detector d(c);
    CHECK(d.view_of(texture(1, false, 40, 70)).shape() == Shape{3, 32, 56});
    CHECK(d.view_of(texture(1, false, 90, 45)).shape() == Shape{3, 64, 32});
    CHECK(d.view_of(texture(1, false, 20, 400)).shape() == Shape{3, 32, 96});  // capped at 3:1
    CHECK(d.view_of(texture(1, false, 32, 50)).shape() == Shape{3, 32, 50});
    // fitted on shots of mixed shapes (batched by size), maps come back at each image's size
    c.n_augment = 2;
    Detector f(c);
    f.fit({texture(1, false, 40, 70), texture(2, false, 48, 48), texture(3, false, 40, 70)});
    const auto maps = f.score_map({texture(4, true, 40, 70), texture(5, false, 50, 30)});
    CHECK(maps[0].shape() == Shape{40, 70});
    CHECK(maps[1].shape() == Shape{50, 30});
}

TEST_CASE("detector: patch scorers refuse a one-shot fit; the global scorer has no map; bad options are named") {
    Detector d(tiny(Scorer::PatchKnn));
    CHECK_THROWS_WITH_AS(d.fit({texture(1, false)}), doctest::Contains("at least 2 normal images"), Error);
    CHECK_THROWS_WITH_AS(d.score_map({texture(1, false)}), doctest::Contains("not fitted"), Error);
    d.fit({texture(1, false), texture(2, false)});
    CHECK_THROWS_WITH_AS(d.score_map({}), doctest::Contains("no images"), Error);
    DetectorConfig g = tiny(Scorer::Global);
    g.n_augment = 2;
    Detector gd(g);
    gd.fit({texture(1, false), texture(2, false)});
    CHECK_THROWS_WITH_AS(gd.score_map({texture(1, false)}), doctest::Contains("no anomaly map"), Error);
    DetectorConfig bad = tiny(Scorer::PatchKnn);
    bad.patch.coreset = 0;
    CHECK_THROWS_WITH_AS(Detector{bad}, doctest::Contains("coreset"), Error);
    CHECK_THROWS_WITH_AS(parse_scorer("patchcore"), doctest::Contains("global | patch-gauss | patch-knn | patch-sum"), Error);
    CHECK_THROWS_WITH_AS(parse_view("crop"), doctest::Contains("squash | keep"), Error);
}

TEST_CASE("detector: the auto scorer is patch-sum, with every candidate's synthetic AUROC, deterministically") {
    std::vector<Tensor> shots{texture(1, false), texture(2, false), texture(3, false), texture(7, false)};
    DetectorConfig c = tiny(Scorer::Auto);
    c.patch.fallback_auroc = 0;  // (the fallback to the global scorer: the next case)
    Detector a(c), b(c);
    a.fit(shots);
    b.fit(shots);
    REQUIRE(a.selection().size() == 3);
    CHECK(a.selection()[0].scorer == "patch-gauss");
    CHECK(a.selection()[1].scorer == "patch-knn");
    CHECK(a.selection()[2].scorer == "patch-sum");
    for (const auto& s : a.selection()) {
        CHECK(s.synthetic_auroc >= 0);
        CHECK(s.synthetic_auroc <= 1);
    }
    CHECK(a.config().scorer == Scorer::PatchSum);
    // the table's patch-sum row and threshold are those of a fixed patch-sum fit
    DetectorConfig fixed = c;
    fixed.scorer = Scorer::PatchSum;
    Detector f(fixed);
    f.fit(shots);
    CHECK(f.threshold() == a.threshold());
    CHECK(f.patch_scale() == a.patch_scale());
    CHECK(f.score(texture(6, true)) == a.score(texture(6, true)));
    CHECK(b.config().scorer == a.config().scorer);
    for (size_t i = 0; i < 3; ++i) CHECK(b.selection()[i].synthetic_auroc == a.selection()[i].synthetic_auroc);
    CHECK(b.threshold() == a.threshold());
    // the choice travels in the model file as a fixed scorer
    const std::string p = tmp("auto.fsad");
    a.save(p);
    CHECK(Detector::load(p).config().scorer == a.config().scorer);
    fs::remove(p);
    // with the global scorer among the candidates: four rows; global when its synthetic AUROC is
    // above patch-sum's
    c.auto_global = true;
    Detector ag(c);
    ag.fit(shots);
    REQUIRE(ag.selection().size() == 4);
    CHECK(ag.selection()[3].scorer == "global");
    const bool global_wins = ag.selection()[3].synthetic_auroc > ag.selection()[2].synthetic_auroc;
    CHECK(ag.config().scorer == (global_wins ? Scorer::Global : Scorer::PatchSum));
    CHECK(std::isfinite(ag.score(texture(6, true))));
    // a fixed scorer computes no table
    Detector g(tiny(Scorer::PatchGauss));
    g.fit(shots);
    CHECK(g.selection().empty());
}

TEST_CASE("detector: the auto scorer falls back to the global scorer when no patch scorer separates the synthetic defects") {
    std::vector<Tensor> shots{texture(1, false), texture(2, false), texture(3, false), texture(7, false)};
    const std::vector<Tensor> test{texture(6, true), texture(8, false), texture(9, true, 40, 56)};
    DetectorConfig c = tiny(Scorer::Auto);
    c.patch.fallback_auroc = 0;
    Detector patch(c);
    patch.fit(shots);
    double best = 0;
    for (const auto& s : patch.selection()) best = std::max(best, s.synthetic_auroc);
    // a bar above the best patch scorer's synthetic AUROC: the global scorer, listed last
    c.patch.fallback_auroc = best + 0.01;
    Detector fb(c);
    fb.fit(shots);
    REQUIRE(fb.selection().size() == 4);
    for (size_t i = 0; i < 3; ++i) CHECK(fb.selection()[i].synthetic_auroc == patch.selection()[i].synthetic_auroc);
    CHECK(fb.selection()[3].scorer == "global");
    CHECK(fb.config().scorer == Scorer::Global);
    // its scores are those of the global scorer fitted on the shots' views (its threshold is the
    // held-out shots' prediction bound, as the patch scorers')
    DetectorConfig g = tiny(Scorer::Global);
    Detector global(g);
    global.fit(shots);
    const std::vector<float> want = global.score(test), got = fb.score(test);
    FSAD_CHECK_CLOSE("fallback scores", got, want, 1e-5, 1e-5);
    CHECK(std::isfinite(fb.threshold()));
    CHECK(fb.threshold() > 0);
    // at the best patch scorer's value exactly, no fallback
    c.patch.fallback_auroc = best;
    Detector kept(c);
    kept.fit(shots);
    CHECK(kept.selection().size() == 3);
    CHECK(kept.config().scorer != Scorer::Global);
    // the choice travels in the model file
    const std::string p = tmp("fallback.fsad");
    fb.save(p);
    const Detector back = Detector::load(p);
    CHECK(back.config().scorer == Scorer::Global);
    CHECK(back.config().patch.fallback_auroc == doctest::Approx(best + 0.01));
    CHECK(back.score(test) == got);
    fs::remove(p);
}

TEST_CASE("detector: the shots view fixes one size from the shots' median aspect ratio") {
    DetectorConfig c = tiny(Scorer::PatchGauss);
    c.view = View::Shots;
    Detector d(c);
    d.fit({texture(1, false, 40, 100), texture(2, false, 40, 90), texture(3, false, 48, 48)});
    CHECK(d.config().view_h == 32);
    CHECK(d.config().view_w == 80);  // median 90/40 = 2.25 -> 72 -> multiple of 16: 80
    CHECK(d.view_of(texture(4, false, 60, 60)).shape() == Shape{3, 32, 80});
    const auto m = d.score_map({texture(4, true, 60, 60)});
    CHECK(m[0].shape() == Shape{60, 60});
    Detector sq(c);
    sq.fit({texture(1, false, 40, 44), texture(2, false, 50, 48)});  // nearly square: square
    CHECK(sq.config().view_h == 32);
    CHECK(sq.config().view_w == 32);
    Detector unfitted(c);
    CHECK_THROWS_WITH_AS(unfitted.view_of(texture(1, false)), doctest::Contains("set by fit"), Error);
}

TEST_CASE("detector: the patch scorers' threshold is a log-normal prediction bound over the held-out scores") {
    // logs 0 and log 4: m = log 2, s = log(4) / sqrt(2); z_0.99 = 2.3263478740
    const double s = std::log(4.0) / std::sqrt(2.0);
    // Student's t quantiles (scipy.stats.t.ppf): 0.99 with 1, 4 and 9 degrees of freedom
    CHECK(prediction_bound({1.0f, 4.0f}, 0.99) == doctest::Approx(std::exp(std::log(2.0) + 31.82051595375758 * s * std::sqrt(1.5))));
    const std::vector<float> five{1.0f, 2.0f, 4.0f, 8.0f, 16.0f}, ten{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    auto bound = [](const std::vector<float>& x, double t) {
        double m = 0, ss = 0;
        for (float e : x) m += std::log(e);
        m /= static_cast<double>(x.size());
        for (float e : x) ss += std::pow(std::log(e) - m, 2);
        const double n = static_cast<double>(x.size());
        return std::exp(m + t * std::sqrt(ss / (n - 1)) * std::sqrt(1 + 1 / n));
    };
    CHECK(prediction_bound(five, 0.99) == doctest::Approx(bound(five, 3.7469473879811366)).epsilon(1e-7));
    CHECK(prediction_bound(ten, 0.99) == doctest::Approx(bound(ten, 2.8214379233005493)).epsilon(1e-7));
    CHECK(prediction_bound(ten, 0.95) == doctest::Approx(bound(ten, 1.8331129326536335)).epsilon(1e-7));
    CHECK(prediction_bound(ten, 0.05) == doctest::Approx(bound(ten, -1.8331129326536335)).epsilon(1e-7));
    CHECK(prediction_bound({1.0f, 4.0f}, 0.5) == doctest::Approx(2.0));  // the median: the geometric mean
    CHECK(prediction_bound({3.0f, 3.0f, 3.0f}, 0.99) == doctest::Approx(3.0));
    const std::vector<float> v{2.1f, 2.4f, 1.9f, 2.8f, 2.2f};
    CHECK(prediction_bound(v, 0.99) > *std::max_element(v.begin(), v.end()));
    CHECK(prediction_bound(v, 0.999) > prediction_bound(v, 0.99));
    CHECK_THROWS_AS(prediction_bound({2.0f}, 0.99), Error);
    CHECK_THROWS_AS(prediction_bound(v, 1.0), Error);
    // with the spread prior: prior_weight pseudo-samples of deviation prior_spread pooled with the
    // n - 1 of the scores, Student's t with n - 1 + prior_weight degrees of freedom
    auto pooled = [](const std::vector<float>& x, double s0, double w, double t) {
        double m = 0, ss = 0;
        for (float e : x) m += std::log(e);
        m /= static_cast<double>(x.size());
        for (float e : x) ss += std::pow(std::log(e) - m, 2);
        const double n = static_cast<double>(x.size());
        return std::exp(m + t * std::sqrt((ss + w * s0 * s0) / (n - 1 + w)) * std::sqrt(1 + 1 / n));
    };
    CHECK(prediction_bound(five, 0.99, 0.15, 10) == doctest::Approx(pooled(five, 0.15, 10, 2.624494067560231)).epsilon(1e-7));
    CHECK(prediction_bound(ten, 0.99, 0.15, 10) == doctest::Approx(pooled(ten, 0.15, 10, 2.539483190622288)).epsilon(1e-7));
    // equal scores: the prior alone sets the width (three scores, 2 + 10 degrees of freedom)
    CHECK(prediction_bound({3.0f, 3.0f, 3.0f}, 0.99, 0.15, 10) ==
          doctest::Approx(3.0 * std::exp(2.680997992996005 * std::sqrt(10 * 0.0225 / 12) * std::sqrt(4.0 / 3))).epsilon(1e-7));
    // a weight of 0 is no prior; a heavy prior is the known-spread normal bound
    CHECK(prediction_bound(five, 0.99, 0.15, 0) == prediction_bound(five, 0.99));
    CHECK(prediction_bound(five, 0.99, 0.15, 1e6) ==
          doctest::Approx(pooled(five, 0.15, 1e6, 2.326351603105889)).epsilon(1e-5));
    // a spread far above the prior's still widens the bound (the prior shrinks it, not replaces it)
    const std::vector<float> wide{1.0f, 3.0f, 9.0f, 27.0f, 81.0f};
    CHECK(prediction_bound(wide, 0.99, 0.15, 10) > 81.0f);
    CHECK_THROWS_AS(prediction_bound(v, 0.99, -0.1, 10), Error);
}

namespace {
// stripes, vertical (a mirror image is the same surface) or diagonal (a mirror turns them the
// other way), at a random phase, with noise
Tensor stripes(uint64_t seed, bool diagonal, int64_t n = 48) {
    Rng rng(seed);
    const float phase = rng.uniform(0.0f, 6.2832f);  // each image its own phase, as photos of a surface
    Tensor t = Tensor::empty(Shape{3, n, n});
    for (int64_t y = 0; y < n; ++y)
        for (int64_t x = 0; x < n; ++x) {
            const float u = diagonal ? static_cast<float>(x + y) * 0.7071f : static_cast<float>(x);
            const float v = std::clamp(0.5f + 0.3f * std::sin(0.8f * u + phase) + rng.normal(0.0f, 0.05f), 0.0f, 1.0f);
            for (int64_t c = 0; c < 3; ++c) t.data()[(c * n + y) * n + x] = v;
        }
    return t;
}
}  // namespace

TEST_CASE("detector: flips auto uses mirrored shots only when the shots look the same mirrored") {
    DetectorConfig c = tiny(Scorer::PatchGauss);
    c.resolution = 48;
    std::vector<Tensor> sym, chiral;
    for (uint64_t i = 0; i < 4; ++i) {
        sym.push_back(stripes(40 + i, false));
        chiral.push_back(stripes(50 + i, true));
    }
    Detector a(c);
    a.fit(sym);
    CAPTURE(a.flip_ratio());
    CHECK(a.flip_ratio() > 0);
    CHECK(a.flip_ratio() <= c.patch.flip_ratio);
    CHECK(a.config().flips == Flips::On);
    Detector b(c);
    b.fit(chiral);
    CAPTURE(b.flip_ratio());
    CHECK(b.flip_ratio() > c.patch.flip_ratio);
    CHECK(b.config().flips == Flips::Off);
    // fixed settings are not measured; on and off fit different densities on the same shots
    c.flips = Flips::On;
    Detector on(c);
    on.fit(chiral);
    c.flips = Flips::Off;
    Detector off(c);
    off.fit(chiral);
    CHECK(on.flip_ratio() == 0);
    CHECK(on.config().flips == Flips::On);
    const std::vector<Tensor> probe{stripes(60, true), stripes(61, false)};
    CHECK(on.score(probe) != off.score(probe));
    CHECK(off.score(probe) == b.score(probe));  // auto that chose off is off
    // mirrored diagonal stripes are normal to the model that learnt them, not to the one that did not
    const Tensor mirrored = method::flip(stripes(62, true), true);
    CHECK(on.score(mirrored) < off.score(mirrored));
    // the choice is stored in the model file
    const std::string p = tmp("flips.fsad");
    a.save(p);
    CHECK(Detector::load(p).config().flips == Flips::On);
    fs::remove(p);
    CHECK(parse_flips("auto") == Flips::Auto);
    CHECK_THROWS_WITH_AS(parse_flips("sometimes"), doctest::Contains("auto | on | off"), Error);
}

TEST_CASE("tiles: offsets on odd lengths start at 0, end flush, stay aligned and overlap as asked") {
    for (int64_t tile : {64, 96, 224})
        for (int64_t overlap : {int64_t{0}, int64_t{16}, tile / 4, tile - method::kTileAlign})
            for (int64_t L : {1, 31, 32, 33, 63, 64, 65, 100, 223, 224, 225, 257, 500, 1250, 4097}) {
                CAPTURE(tile);
                CAPTURE(overlap);
                CAPTURE(L);
                const std::vector<int64_t> o = method::tile_offsets(L, tile, overlap);
                const int64_t padded = (L + 31) / 32 * 32;
                REQUIRE(!o.empty());
                CHECK(o.front() == 0);
                if (padded <= tile) {
                    CHECK(o.size() == 1);
                    continue;
                }
                CHECK(o.back() == padded - tile);  // the last tile ends with the padded side
                for (size_t k = 0; k < o.size(); ++k) {
                    CHECK(o[k] % method::kTileAlign == 0);
                    if (k > 0) {
                        CHECK(o[k] > o[k - 1]);
                        CHECK(o[k - 1] + tile - o[k] >= overlap);
                    }
                }
                // the fewest such tiles: one fewer could not keep the overlap
                const double need = std::ceil(static_cast<double>(padded - tile) / static_cast<double>(tile - overlap));
                CHECK(static_cast<double>(o.size()) >= need + 1);
            }
    CHECK_THROWS_WITH_AS(method::tile_offsets(100, 48, 0), doctest::Contains("multiple of 32"), Error);
    CHECK_THROWS_WITH_AS(method::tile_offsets(100, 64, 40), doctest::Contains("overlap <= tile - 32"), Error);
}

TEST_CASE("tiles: cut and stitched on odd shapes, every cell lands where the whole view has it") {
    // a view whose pixels hold their own coordinates; a tile's "features" are its pixels at every
    // s-th position (one cell per s x s px, as the backbone's stride-s grid), plus the tile's
    // number: stitched, cell (I, J) must hold (s I, s J), taken from the tile it lies deepest in
    const int64_t s = 8;
    for (const auto& [H, W, tile, overlap] : std::vector<std::array<int64_t, 4>>{
             {45, 203, 64, 16}, {200, 77, 64, 32}, {64, 64, 64, 16}, {33, 1000, 96, 24}, {257, 500, 224, 56}, {300, 301, 128, 0}}) {
        CAPTURE(H);
        CAPTURE(W);
        CAPTURE(tile);
        Tensor view = Tensor::zeros(Shape{3, H, W});
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                view.data()[y * W + x] = static_cast<float>(y);
                view.data()[(H + y) * W + x] = static_cast<float>(x);
            }
        const method::TileGrid g = method::plan_tiles(H, W, tile, overlap);
        const std::vector<Tensor> tiles = method::cut_tiles(view, g);
        REQUIRE(static_cast<int64_t>(tiles.size()) == g.count());
        const int64_t h = g.th / s, w = g.tw / s;
        Tensor f = Tensor::zeros(Shape{g.count(), 3, h, w});
        for (int64_t t = 0; t < g.count(); ++t) {
            const int64_t y0 = g.ys[static_cast<size_t>(t) / g.xs.size()], x0 = g.xs[static_cast<size_t>(t) % g.xs.size()];
            REQUIRE(tiles[static_cast<size_t>(t)].shape() == Shape{3, g.th, g.tw});
            const float* p = tiles[static_cast<size_t>(t)].data();
            // edge-padded: a tile's pixel is the view's nearest pixel
            CHECK(p[(g.th - 1) * g.tw + g.tw - 1] == static_cast<float>(std::min(y0 + g.th - 1, H - 1)));
            CHECK(p[(2 * g.th - 1) * g.tw + g.tw - 1] == static_cast<float>(std::min(x0 + g.tw - 1, W - 1)));
            for (int64_t i = 0; i < h; ++i)
                for (int64_t j = 0; j < w; ++j) {
                    float* q = f.data() + t * 3 * h * w + i * w + j;
                    q[0] = p[(i * s) * g.tw + j * s];
                    q[h * w] = p[(g.th + i * s) * g.tw + j * s];
                    q[2 * h * w] = static_cast<float>(t);
                }
        }
        const Tensor grid = method::stitch_tiles(f, g, H, W);
        const int64_t Gh = (H + s - 1) / s, Gw = (W + s - 1) / s;
        REQUIRE(grid.shape() == Shape{3, Gh, Gw});
        int64_t wrong = 0, shallow = 0;
        for (int64_t I = 0; I < Gh; ++I)
            for (int64_t J = 0; J < Gw; ++J) {
                const float* c = grid.data() + I * Gw + J;
                wrong += c[0] != static_cast<float>(I * s) || c[Gh * Gw] != static_cast<float>(J * s);
                // the tile it came from holds it at least as deep (cells from its border) as any
                // other tile holding it, give or take the midway split's rounding
                const auto depth = [&](int64_t t) {
                    const int64_t y0 = g.ys[static_cast<size_t>(t) / g.xs.size()] / s, x0 = g.xs[static_cast<size_t>(t) % g.xs.size()] / s;
                    if (I < y0 || I >= y0 + h || J < x0 || J >= x0 + w) return int64_t{-1};
                    return std::min({I - y0, y0 + h - 1 - I, J - x0, x0 + w - 1 - J});
                };
                int64_t best = -1;
                for (int64_t t = 0; t < g.count(); ++t) best = std::max(best, depth(t));
                const int64_t got = depth(static_cast<int64_t>(c[2 * Gh * Gw]));
                shallow += got < 0 || got + 1 < best;
            }
        CHECK(wrong == 0);
        CHECK(shallow == 0);
    }
}

TEST_CASE("detector: tiles on native views of odd shapes; tiles as large as the view change nothing") {
    std::vector<Tensor> shots{texture(1, false, 70, 150), texture(2, false, 64, 97), texture(3, false, 100, 64),
                              texture(4, false, 70, 150)};
    DetectorConfig c = tiny(Scorer::PatchSum);
    c.view = View::Native;
    c.resolution = 64;
    c.tiles = 64;
    Detector d(c);
    d.fit(shots);
    CHECK(d.view_of(shots[1]).shape() == shots[1].shape());  // native: not resized
    REQUIRE(d.held_out_scores().size() == 4);
    for (float h : d.held_out_scores()) CHECK(std::isfinite(h));
    const std::vector<Tensor> test{texture(5, false, 70, 150), texture(5, true, 70, 150), texture(6, false, 81, 65)};
    const auto s = d.score_views(test, true);
    CHECK(s.maps[0].shape() == Shape{70, 150});
    CHECK(s.maps[2].shape() == Shape{81, 65});
    CHECK(s.scores[1] > s.scores[0]);  // the scratch
    // the same scores one image at a time (tiles batched across images or not), and from the file
    CHECK(d.score(test[2]) == doctest::Approx(s.scores[2]).epsilon(1e-5));
    const std::string p = tmp("tiles.fsad");
    d.save(p);
    const Detector l = Detector::load(p);
    CHECK(l.config().tiles == 64);
    CHECK(l.config().view == View::Native);
    CHECK(l.score(test[1]) == doctest::Approx(s.scores[1]).epsilon(1e-5));
    fs::remove(p);
    // tiles no smaller than the views: every view runs whole, exactly as with tiles off
    DetectorConfig w = tiny(Scorer::PatchKnn);
    w.view = View::Native;
    w.resolution = 64;
    w.tiles = 160;
    DetectorConfig off = w;
    off.tiles = -1;
    std::vector<Tensor> big{texture(1, false, 160, 160), texture(2, false, 160, 160), texture(3, false, 160, 160)};
    Detector a(w), b(off);
    a.fit(big);
    b.fit(big);
    CHECK(a.threshold() == b.threshold());
    CHECK(a.score(texture(5, true, 160, 160)) == b.score(texture(5, true, 160, 160)));
    // smaller tiles: the stitched features differ from the whole view's near the tiles' borders
    // only; the scratch still stands out
    w.tiles = 64;
    Detector t(w);
    t.fit(big);
    const auto ts = t.score({texture(5, false, 160, 160), texture(5, true, 160, 160)});
    CHECK(ts[1] > ts[0]);
    CHECK(ts[0] != b.score(texture(5, false, 160, 160)));
}

TEST_CASE("detector: auto tiles only views of more than kAutoTileArea tiles, at the resolution") {
    DetectorConfig c = tiny(Scorer::PatchGauss);
    c.view = View::Native;
    c.resolution = 80;  // tiles of 64 px: the resolution rounded down to a multiple of 32
    const Detector d(c);
    CHECK(d.tile_of(64, 64 * DetectorConfig::kAutoTileArea) == 0);
    CHECK(d.tile_of(64, 64 * DetectorConfig::kAutoTileArea + 1) == 64);
    CHECK(d.tile_of(256, 256) == 0);  // 16 tiles of 64 px
    CHECK(d.tile_of(256, 257) == 64);
    c.tiles = -1;
    CHECK(Detector(c).tile_of(3000, 3000) == 0);
    c.view = View::Shots;  // views of other kinds are never refused by auto tiles
    c.tiles = 0;
    CHECK(Detector(c).tile_of(40, 40) == 0);
    // fitted and scored on a long native view, tiled: maps at its size
    c.view = View::Native;
    Detector f(c);
    f.fit({texture(1, false, 64, 1100), texture(2, false, 64, 1100)});
    CHECK(f.score_map({texture(3, true, 64, 1100)})[0].shape() == Shape{64, 1100});
}

TEST_CASE("detector: an image smaller than a tile, bad tile sizes: clear errors") {
    DetectorConfig c = tiny(Scorer::PatchGauss);
    c.view = View::Native;
    c.resolution = 64;
    c.tiles = 64;
    Detector d(c);
    CHECK_THROWS_WITH_AS(d.fit({texture(1, false, 70, 150), texture(2, false, 40, 100)}),
                         doctest::Contains("Detector::fit: image 1: the view is 40 x 100 px, smaller than a tile (64 px)"), Error);
    d.fit({texture(1, false, 70, 150), texture(2, false, 80, 100)});
    CHECK_THROWS_WITH_AS(d.score({texture(3, false, 64, 64), texture(4, false, 63, 200)}),
                         doctest::Contains("Detector::score: image 1: the view is 63 x 200 px, smaller than a tile"), Error);
    // auto tiles in the native view: the working resolution is the tile
    c.tiles = 0;
    Detector a(c);
    CHECK_THROWS_WITH_AS(a.fit({texture(1, false, 70, 150), texture(2, false, 50, 50)}),
                         doctest::Contains("image 1: the view is 50 x 50 px, smaller than a tile (64 px)"), Error);
    for (int64_t bad : {int64_t{-2}, int64_t{32}, int64_t{100}, int64_t{8192}}) {
        DetectorConfig b = tiny(Scorer::PatchGauss);
        b.tiles = bad;
        CHECK_THROWS_WITH_AS(Detector{b}, doctest::Contains("tiles must be 0 (auto), -1 (off) or a multiple of 32"), Error);
    }
    DetectorConfig o = tiny(Scorer::PatchGauss);
    o.patch.tile_overlap = 0.6;
    CHECK_THROWS_WITH_AS(Detector{o}, doctest::Contains("tile_overlap must lie in [0, 0.5]"), Error);
}
