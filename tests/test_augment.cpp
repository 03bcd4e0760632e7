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

namespace {
// Same shape, every value equal.
bool identical(const Tensor& a, const Tensor& b) {
    if (a.shape() != b.shape()) return false;
    for (int64_t i = 0; i < a.numel(); ++i)
        if (a.data()[i] != b.data()[i]) return false;
    return true;
}
// Shots of different sizes packed one after another (ops::pack_images), as ByolTrainer packs them.
struct Packed {
    std::vector<Tensor> shots;
    Tensor packed;
    std::vector<ops::PackedImage> images;
};
Packed packed_shots(const std::vector<std::pair<int64_t, int64_t>>& sizes) {
    Packed p;
    for (size_t i = 0; i < sizes.size(); ++i) p.shots.push_back(test_image(sizes[i].first, sizes[i].second, 40 + i));
    p.packed = pack_images(p.shots, p.images);
    CHECK(p.images[1].offset == 3 * sizes[0].first * sizes[0].second);  // one after another
    return p;
}
}  // namespace

TEST_CASE("augment: split into draws and their application, per image and batched over packed images, to the bit") {
    const Packed s = packed_shots({{50, 70}, {33, 33}, {90, 41}});
    for (int variant = 0; variant < 3; ++variant) {
        CAPTURE(variant);
        AugmentOptions o;
        o.size = 24;
        if (variant == 1) o.out_h = 20, o.out_w = 30;      // an aspect other than square
        if (variant == 2) o.colour = false, o.blur_p = 1;  // affine only (the blur is not drawn)
        o.jitter_p = variant == 0 ? 1.0f : 0.8f;
        std::vector<AugmentParams> params;
        std::vector<Tensor> expect;
        for (int i = 0; i < 12; ++i) {
            const size_t shot = static_cast<size_t>(i) % s.shots.size();
            Rng a(900 + i), b(900 + i);
            const Tensor ref = augment(s.shots[shot], o, a);  // the one-call form draws the same
            AugmentParams p = sample_augment(s.shots[shot].dim(1), s.shots[shot].dim(2), o, b);
            CHECK(identical(apply_augment(s.shots[shot], p), ref));
            p.crop.image = static_cast<int64_t>(shot);
            params.push_back(p);
            expect.push_back(ref);
        }
        if (variant == 2) CHECK(params[0].blur_sigma == 0.0f);
        const Tensor views = augment_images(s.packed, s.images, params);
        REQUIRE(views.shape() == Shape{12, 3, expect[0].dim(1), expect[0].dim(2)});
        for (int64_t i = 0; i < 12; ++i) {
            CAPTURE(i);
            const Tensor got = views.slice(i, i + 1).reshape(expect[static_cast<size_t>(i)].shape());
            CHECK(identical(got, expect[static_cast<size_t>(i)]));
        }
    }
    // normalisation of a batch: imgproc's per image
    Rng r(3);
    const Tensor views = augment_images(s.packed, s.images, {sample_augment(50, 70, {}, r)});
    CHECK(identical(ops::imagenet_normalize(views).reshape(Shape{3, 224, 224}),
                    imgproc::imagenet_normalize(views.reshape(Shape{3, 224, 224}))));
}

TEST_CASE("augment: negatives split into draws and their application, batched (every kind in one batch), to the bit") {
    const int64_t n = 10, h = 40, w = 48;
    std::vector<NegativeParams> params;
    std::vector<Tensor> expect;
    Tensor views = Tensor::empty(Shape{n, 3, h, w});
    const Negative kinds[] = {Negative::CutPaste, Negative::Scar, Negative::Union, Negative::CifarBlurShift, Negative::None};
    for (int64_t i = 0; i < n; ++i) {
        const Tensor img = test_image(h, w, 70 + static_cast<uint64_t>(i));
        std::copy(img.data(), img.data() + img.numel(), views.data() + i * img.numel());
        const Negative k = kinds[i % 5];
        Rng a(500 + static_cast<uint64_t>(i)), b(500 + static_cast<uint64_t>(i));
        const Tensor ref = negative(img, k, a);
        const NegativeParams p = sample_negative(h, w, k, b);
        CHECK((p.kind != Negative::Union && (k == Negative::Union || p.kind == k)));
        CHECK(identical(apply_negative(img, p), ref));
        params.push_back(p);
        expect.push_back(ref);
    }
    const Tensor out = negative_images(views, params);
    for (int64_t i = 0; i < n; ++i) {
        CAPTURE(i);
        CHECK(identical(out.slice(i, i + 1).reshape(Shape{3, h, w}), expect[static_cast<size_t>(i)]));
    }
    CHECK_THROWS_WITH_AS(negative_images(views, {params[0]}), doctest::Contains("one draw per view"), Error);
}

TEST_CASE("augment: the image-set ops refuse bad layouts and parameters with the op named") {
    const Tensor x = Tensor::zeros(Shape{3 * 4 * 5});
    const std::vector<ops::PackedImage> one = {{0, 4, 5}};
    CHECK_THROWS_WITH_AS(ops::rotate_images(x, {{1, 4, 5}}, {0.0f}), doctest::Contains("does not lie within"), Error);
    CHECK_THROWS_WITH_AS(ops::rotate_images(x, one, {}), doctest::Contains("one angle per image"), Error);
    CHECK_THROWS_WITH_AS(ops::rotate_images(Tensor::zeros(Shape{100}), {{0, 2, 2}, {11, 2, 2}}, {0.0f, 0.0f}),
                         doctest::Contains("input images overlap (at value 11)"), Error);
    CHECK_THROWS_WITH_AS(ops::crop_resize_images(x, one, {{.image = 1, .h = 2, .w = 2, .out_h = 2, .out_w = 2}}),
                         doctest::Contains("names image 1 of 1"), Error);
    CHECK_THROWS_WITH_AS(ops::crop_resize_images(x, one, {{.image = 0, .h = 0, .w = 2, .out_h = 2, .out_w = 2}}),
                         doctest::Contains("empty crop"), Error);
    CHECK_THROWS_WITH_AS(ops::colour_images(x, one, {{math::Colour::Hue, 0.7f}}), doctest::Contains("outside [-0.5, 0.5]"), Error);
    CHECK_THROWS_WITH_AS(ops::blur_images(x, one, {{0.5f, 0.5f}}), doctest::Contains("odd length"), Error);
    ops::PasteJob j;
    j.patch = 0, j.canvas_h = 2, j.canvas_w = 2, j.oy = 1;
    CHECK_THROWS_WITH_AS(ops::paste_images(x, one, x, {{0, 2, 2}}, {j}), doctest::Contains("does not lie on its canvas"), Error);
    CHECK_THROWS_WITH_AS(augment_images(x, one, {}), doctest::Contains("no views"), Error);
}
