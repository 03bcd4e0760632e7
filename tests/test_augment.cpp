#include <filesystem>

#include "helpers.hpp"

using namespace fsad;
using namespace fsad::method;

namespace {
Tensor test_image(int64_t h, int64_t w, uint64_t seed) {
    Tensor t = Rng(seed).uniform_tensor(Shape{3, h, w}, 0.0f, 1.0f);
    // add structure so crops and rotations are distinguishable
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) t.data()[y * w + x] = static_cast<float>(y) / static_cast<float>(h);
    return t;
}
int64_t changed(const Tensor& a, const Tensor& b) {
    int64_t n = 0;
    const int64_t hw = a.dim(1) * a.dim(2);
    for (int64_t i = 0; i < hw; ++i)
        for (int64_t c = 0; c < 3; ++c)
            if (a.data()[c * hw + i] != b.data()[c * hw + i]) {
                ++n;
                break;
            }
    return n;
}
}  // namespace

TEST_CASE("augment: seeded, reproducible, in range, right size") {
    Tensor img = test_image(50, 70, 1);
    AugmentOptions o;
    o.size = 32;
    Rng a(7), b(7), c(8);
    Tensor x = augment(img, o, a), y = augment(img, o, b), z = augment(img, o, c);
    CHECK(x.shape() == Shape{3, 32, 32});
    CHECK(x.to_vector() == y.to_vector());
    CHECK(x.to_vector() != z.to_vector());
    for (float v : x.to_vector()) REQUIRE((v >= 0.0f && v <= 1.0f));
    o.colour = false;
    Rng d(9);
    CHECK(augment(img, o, d).shape() == Shape{3, 32, 32});
    CHECK_THROWS_WITH_AS(augment(Tensor::zeros(Shape{1, 4, 4}), o, d), doctest::Contains("RGB image [3,H,W]"), Error);
}

TEST_CASE("augment: geometric building blocks") {
    Tensor img = test_image(9, 9, 2);
    FSAD_CHECK_CLOSE("rotate 0", rotate(img, 0.0f).to_vector(), img.to_vector(), 1e-6, 0);
    FSAD_CHECK_CLOSE("crop_resize identity", crop_resize(img, 0, 0, 9, 9, 9, 9).to_vector(), img.to_vector(), 1e-6, 0);
    Tensor r = rotate(img, 90.0f);
    // counter-clockwise by 90 degrees about the centre: dest (y, x) <- source (x, 8 - y)
    for (int64_t y = 1; y < 8; ++y)
        for (int64_t x = 1; x < 8; ++x)
            CHECK(r.data()[y * 9 + x] == doctest::Approx(img.data()[x * 9 + (8 - y)]).epsilon(1e-5));
    Tensor h = flip(img, true);
    CHECK(h.data()[0] == img.data()[8]);
    CHECK(flip(h, true).to_vector() == img.to_vector());
    Tensor v = flip(img, false);
    CHECK(v.data()[0] == img.data()[8 * 9]);
}

TEST_CASE("augment: colour building blocks") {
    Tensor img = test_image(8, 8, 3);
    FSAD_CHECK_CLOSE("brightness 1", adjust_brightness(img, 1.0f).to_vector(), img.to_vector(), 1e-7, 0);
    FSAD_CHECK_CLOSE("contrast 1", adjust_contrast(img, 1.0f).to_vector(), img.to_vector(), 1e-6, 0);
    FSAD_CHECK_CLOSE("saturation 1", adjust_saturation(img, 1.0f).to_vector(), img.to_vector(), 1e-6, 0);
    FSAD_CHECK_CLOSE("hue 0", adjust_hue(img, 0.0f).to_vector(), img.to_vector(), 1e-5, 0);
    FSAD_CHECK_CLOSE("hue there and back", adjust_hue(adjust_hue(img, 0.2f), -0.2f).to_vector(), img.to_vector(), 1e-5, 0);
    Tensor g = to_grayscale(img);
    for (int64_t i = 0; i < 64; ++i) CHECK(g.data()[i] == g.data()[64 + i]);
    Tensor flat = Tensor::full(Shape{3, 8, 8}, 0.3f);
    FSAD_CHECK_CLOSE("blur keeps a flat image", gaussian_blur(flat, 1.5f).to_vector(), flat.to_vector(), 1e-6, 0);
    FSAD_CHECK_CLOSE("contrast 0 is the mean grey", adjust_contrast(flat, 0.0f).to_vector(), flat.to_vector(), 1e-6, 0);
}

TEST_CASE("augment: negatives change a bounded region") {
    Tensor img = test_image(64, 64, 4);
    for (int s = 0; s < 20; ++s) {
        Rng rng(static_cast<uint64_t>(s));
        const int64_t cp = changed(negative(img, Negative::CutPaste, rng), img);
        CHECK(cp <= static_cast<int64_t>(0.16 * 64 * 64));
        const int64_t sc = changed(negative(img, Negative::Scar, rng), img);
        CHECK(sc <= 16 * 25 + 64);  // at most the rotated strip, a few edge pixels included
        CHECK(sc > 0);
    }
    Rng rng(1);
    CHECK(changed(negative(img, Negative::CifarBlurShift, rng), img) > 0);
    CHECK(negative(img, Negative::None, rng).same_storage(img));
    CHECK(parse_negative("union") == Negative::Union);
    CHECK_THROWS_WITH_AS(parse_negative("holes"), doctest::Contains("unknown negative augmentation 'holes'"), Error);
}

TEST_CASE("augment: a grid of samples is written as a PNG") {
    std::vector<Tensor> imgs;
    Rng rng(5);
    AugmentOptions o;
    o.size = 24;
    Tensor img = test_image(40, 40, 5);
    for (int i = 0; i < 6; ++i) imgs.push_back(augment(img, o, rng));
    const std::string p = (std::filesystem::temp_directory_path() / "fsad_grid_test.png").string();
    write_grid(p, imgs, 3);
    Tensor back = io::load_image(p);
    CHECK(back.shape() == Shape{3, 2 * 24 + 3 * 2, 3 * 24 + 4 * 2});
    std::filesystem::remove(p);
}
