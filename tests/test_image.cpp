#include "helpers.hpp"

using namespace fsad;

namespace {
std::string img(const char* n) { return test::data_dir() + "/images/" + n; }
const std::vector<float> kGray = {0.0f, 0.2f, 0.4f, 0.6f, 0.8f, 1.0f};
}  // namespace

TEST_CASE("images: 8/16-bit gray, gray+alpha, RGB, RGBA decode to RGB in [0,1]") {
    for (const char* n : {"gray8.png", "gray16.png", "graya8.png"}) {
        Tensor t = io::load_image(img(n));
        REQUIRE(t.shape() == Shape{3, 2, 3});
        std::vector<float> v = t.to_vector();
        for (int c = 0; c < 3; ++c)
            FSAD_CHECK_CLOSE(std::string(n) + " channel " + std::to_string(c), std::vector<float>(v.begin() + 6 * c, v.begin() + 6 * c + 6),
                             kGray, 1e-6, 0);
    }
    for (const char* n : {"rgb8.png", "rgba8.png", "rgb16.png"}) {
        Tensor t = io::load_image(img(n));
        REQUIRE(t.shape() == Shape{3, 2, 3});
        std::vector<float> v = t.to_vector();
        std::vector<float> g(v.begin() + 6, v.begin() + 12), want(6);
        for (int i = 0; i < 6; ++i) want[static_cast<size_t>(i)] = 1.0f - kGray[static_cast<size_t>(i)];
        FSAD_CHECK_CLOSE(std::string(n) + " red", std::vector<float>(v.begin(), v.begin() + 6), kGray, 1e-6, 0);
        FSAD_CHECK_CLOSE(std::string(n) + " green", g, want, 1e-6, 0);
    }
    // 16 bits keep their precision: blue is 1000/65535, not a multiple of 1/255
    CHECK(io::load_image(img("rgb16.png")).data()[12] == doctest::Approx(1000.0 / 65535.0).epsilon(1e-6));
}

TEST_CASE("images: unreadable, truncated and non-image files name the file") {
    CHECK_THROWS_WITH_AS(io::load_image(img("truncated.png")), doctest::Contains("truncated.png: cannot decode"), IOError);
    CHECK_THROWS_WITH_AS(io::load_image(img("not_an_image.png")), doctest::Contains("not_an_image.png: cannot decode"), IOError);
    CHECK_THROWS_WITH_AS(io::load_image(img("missing.png")), doctest::Contains("missing.png: cannot open"), IOError);
    CHECK_THROWS_WITH_AS(io::decode_image("", "empty.png"), doctest::Contains("empty.png: empty file"), IOError);
}

TEST_CASE("images: resizing and centre crop") {
    Tensor t = io::load_image(img("gray8.png"));
    Tensor same = io::resize_antialias(t, 2, 3);
    FSAD_CHECK_CLOSE("identity resize", same.to_vector(), t.to_vector(), 1e-6, 0);
    Tensor flat = Tensor::full(Shape{3, 37, 53}, 0.25f);
    for (auto [h, w] : {std::pair<int64_t, int64_t>{8, 8}, {100, 70}, {37, 20}}) {
        Tensor r = io::resize_antialias(flat, h, w);
        CHECK(r.shape() == Shape{3, h, w});
        FSAD_CHECK_CLOSE("flat stays flat", r.to_vector(), std::vector<float>(static_cast<size_t>(3 * h * w), 0.25f), 1e-6, 0);
    }
    Tensor c = io::resize_short_center_crop(flat, 40, 32, 32);
    CHECK(c.shape() == Shape{3, 32, 32});
    CHECK_THROWS_AS(io::resize_short_center_crop(flat, 20, 32, 32), Error);
    // to the same size: a copy (the filter at scale 1 is the identity; the shortcut skips it),
    // not the input's storage
    Tensor rnd = test::randu(Shape{3, 37, 53}, 5, 0.0f, 1.0f);
    Tensor copy = io::resize_antialias(rnd, 37, 53);
    CHECK(copy.to_vector() == rnd.to_vector());
    CHECK(copy.data() != rnd.data());
}

TEST_CASE("images: a normalised batch is the images normalised one by one, stacked") {
    std::vector<Tensor> imgs;
    for (uint64_t i = 0; i < 5; ++i) imgs.push_back(test::randu(Shape{3, 9, 7}, 40 + i, 0.0f, 1.0f));
    const Tensor b = method::normalized_batch(imgs);
    REQUIRE(b.shape() == Shape{5, 3, 9, 7});
    for (int64_t i = 0; i < 5; ++i)
        CHECK(b.slice(i, i + 1).to_vector() == io::imagenet_normalize(imgs[static_cast<size_t>(i)]).to_vector());
    imgs.push_back(test::randu(Shape{3, 9, 8}, 50, 0.0f, 1.0f));
    CHECK_THROWS_WITH_AS(method::normalized_batch(imgs), doctest::Contains("image 5 is [3, 9, 8]"), Error);
}
