#include <filesystem>

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

namespace {
std::string bytes_of(std::initializer_list<int> b) {
    std::string s;
    for (int x : b) s.push_back(static_cast<char>(x));
    return s;
}
}  // namespace

// a few bytes whose header claims 60000 x 60000 pixels (43 GB as floats): refused on the header,
// before any allocation, with the file and the size named
TEST_CASE("images: a header claiming more than kMaxImagePixels is refused before decoding") {
    const std::string png = bytes_of({0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 'I', 'H', 'D', 'R', 0, 0, 0xea,
                                      0x60, 0, 0, 0xea, 0x60, 8, 2, 0, 0, 0, 0x0f, 0xb0, 0xe2, 0x15, 0, 0, 0, 0x0c, 'I', 'D',
                                      'A', 'T', 0x78, 0x9c, 0x63, 0x60, 0xa0, 0x0c, 0, 0, 0, 0x40, 0, 1, 0xb7, 0x34, 0x7c,
                                      0xef, 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82});
    const std::string pgm = "P5\n60000 60000\n255\n" + std::string(16, '\0');
    // BMP: 14-byte file header, 40-byte info header (60000 x 60000, 24 bits), 4 bytes of pixels
    std::string bmp = bytes_of({'B', 'M', 0x3a, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 40, 0, 0, 0, 0x60, 0xea, 0, 0, 0x60, 0xea,
                                0, 0, 1, 0, 24, 0});
    bmp += std::string(24, '\0') + std::string(4, '\x7f');
    // TGA: uncompressed true-colour, 60000 x 60000, 24 bits
    const std::string tga = bytes_of({0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x60, 0xea, 0x60, 0xea, 24, 0}) + std::string(8, '\x10');
    const std::pair<const char*, const std::string*> bombs[] = {
        {"bomb.png", &png}, {"bomb.pgm", &pgm}, {"bomb.bmp", &bmp}, {"bomb.tga", &tga}};
    for (const auto& [name, bytes] : bombs) {
        CAPTURE(name);
        const std::string want = std::string(name) + ": image of 60000 x 60000 pixels exceeds fsad's limit";
        CHECK_THROWS_WITH_AS(io::decode_image(*bytes, name), doctest::Contains(want.c_str()), IOError);
    }
    // sides near 2^32 (found by the fuzzer: their product overflowed int64 in this check)
    std::string png4g = png;
    for (size_t i = 16; i < 24; ++i) png4g[i] = '\xed';
    CHECK_THROWS_WITH_AS(io::decode_image(png4g, "4g.png"),
                         doctest::Contains("4g.png: image of 3991793133 x 3991793133 pixels exceeds fsad's limit"), IOError);
    // a file on disk: the message names the path
    const std::string path = (std::filesystem::temp_directory_path() / "fsad_image_bomb.png").string();
    io::write_file_atomic(path, png);
    const std::string want = path + ": image of 60000 x 60000";
    CHECK_THROWS_WITH_AS(io::load_image(path), doctest::Contains(want.c_str()), IOError);
    // at the limit's order of size a real image still decodes: 4096 x 1 (the limit is on pixels)
    CHECK(io::decode_image(io::encode_png(Tensor::full(Shape{3, 1, 4096}, 0.5f)), "wide.png").shape() == (Shape{3, 1, 4096}));
}

// regressions of tests/fuzz/fuzz_image on stb_image 2.27 (Debian's libstb): inputs that made stb
// write past a table or overflow an int are refused with the file named, before stb sees them
TEST_CASE("images: a JPEG Huffman table of more than 256 codes is refused (stb 2.27 overflow)") {
    std::string jpg = io::encode_jpeg(test::texture(1, false, 16, 16), 90);
    REQUIRE(io::decode_image(jpg, "ok.jpg").shape() == (Shape{3, 16, 16}));
    const size_t dht = jpg.find("\xFF\xC4");
    REQUIRE(dht != std::string::npos);
    for (size_t k = 0; k < 16; ++k) jpg[dht + 5 + k] = '\x20';  // 16 x 32 = 512 codes in the first table
    CHECK_THROWS_WITH_AS(io::decode_image(jpg, "dht.jpg"), doctest::Contains("dht.jpg: cannot decode image (corrupt JPEG"),
                         IOError);
    // stb skips 0xFF fill bytes before the SOI (found by the fuzzer: the check looked for FF D8 first)
    CHECK_THROWS_WITH_AS(io::decode_image("\xFF\xFF" + jpg, "fill.jpg"),
                         doctest::Contains("fill.jpg: cannot decode image (corrupt JPEG"), IOError);
    CHECK(io::decode_image("\xFF\xFF" + io::encode_jpeg(test::texture(1, false, 16, 16), 90), "ok.jpg").shape() ==
          (Shape{3, 16, 16}));
}

TEST_CASE("images: a PGM/PPM header integer beyond 2^24 is refused (stb 2.27 int overflow)") {
    const std::string pixels(16, '\x40');
    // 4294967300 = 2^32 + 4: stb's int wraps it to a width of 4, a silently wrong image
    for (const std::string header : {"P5\n4294967300 2\n255\n", "P6 2 # c\n 2 99999999999999\n", "P5\n16777217 1\n255\n"}) {
        CAPTURE(header);
        CHECK_THROWS_WITH_AS(io::decode_image(header + pixels, "big.pgm"),
                             doctest::Contains("big.pgm: cannot decode image (corrupt PGM/PPM header"), IOError);
    }
    CHECK(io::decode_image("P5\n# a comment\n4 2\n255\n" + std::string(8, '\x80'), "ok.pgm").shape() == (Shape{3, 2, 4}));
}

TEST_CASE("images: GIF, PSD, HDR and PIC files are refused by name") {
    const std::pair<std::string, const char*> cases[] = {{"GIF89a\x02\x00\x02\x00", "GIF"},
                                                         {"8BPS\x00\x01", "PSD"},
                                                         {"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n", "HDR"},
                                                         {"\x53\x80\xF6\x34PICT", "PIC"}};
    for (const auto& [bytes, fmt] : cases) {
        const std::string want = std::string("x.img: ") + fmt + " images are not supported";
        CHECK_THROWS_WITH_AS(io::decode_image(bytes, "x.img"), doctest::Contains(want.c_str()), IOError);
    }
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
