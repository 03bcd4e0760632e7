#include "fsad/io/image.hpp"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fsad/io/file.hpp"

namespace fsad::io {

namespace {
std::string stb_reason() {
    const char* r = stbi_failure_reason();
    return r ? r : "unknown reason";
}

bool starts_with(const std::string& b, const char* magic, size_t n) { return b.size() >= n && b.compare(0, n, magic, n) == 0; }

// stb_image's formats that fsad does not read (animations, layered, HDR, Softimage): refused by
// their magic numbers, so that hostile files reach only the decoders fsad needs.
const char* unsupported_format(const std::string& b) {
    if (starts_with(b, "GIF8", 4)) return "GIF";
    if (starts_with(b, "8BPS", 4)) return "PSD";
    if (starts_with(b, "#?RADIANCE\n", 11) || starts_with(b, "#?RGBE\n", 7)) return "HDR";
    if (starts_with(b, "\x53\x80\xF6\x34", 4)) return "PIC";
    return nullptr;
}

// stb_image 2.27 (Debian 12's libstb) builds a Huffman table from a DHT segment's 16 code counts
// without checking that they sum to at most 256, and writes past the table's 257 entries (found by
// tests/fuzz/fuzz_image; fixed upstream in 2.28). Walks the JPEG's marker segments as stb does,
// skipping entropy-coded data, and reports whether every Huffman table is within that bound.
bool jpeg_huffman_tables_ok(const std::string& b) {
    const auto at = [&](size_t i) -> unsigned { return i < b.size() ? static_cast<unsigned char>(b[i]) : 0u; };
    size_t i = 2;  // after SOI
    while (i + 1 < b.size()) {
        if (at(i) != 0xFF || at(i + 1) == 0xFF) {  // entropy-coded data, junk, or a fill byte
            ++i;
            continue;
        }
        const unsigned m = at(i + 1);
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {  // stuffed 0xFF, TEM, RSTn, SOI: no length
            i += 2;
            continue;
        }
        if (m == 0xD9) return true;  // EOI
        const size_t len = (at(i + 2) << 8) | at(i + 3);
        if (m == 0xC4) {  // as stbi__process_marker reads it: tables of 1 + 16 + n bytes while L > 0
            int64_t left = static_cast<int64_t>(len) - 2;
            size_t j = i + 4;
            while (left > 0) {
                const unsigned q = at(j);
                if ((q >> 4) > 1 || (q & 15) > 3) break;  // stb refuses the table
                size_t n = 0;
                for (size_t k = 0; k < 16; ++k) n += at(j + 1 + k);
                if (n > 256) return false;
                j += 17 + n;
                left -= static_cast<int64_t>(17 + n);
            }
        }
        i += 2 + len;
    }
    return true;
}

// stb_image 2.27 reads a PGM/PPM header's integers (width, height, maximum value) into an int
// without an overflow check (found by tests/fuzz/fuzz_image: signed overflow, and "4294967300"
// wraps to a width of 4). Reads them as stbi__pnm_info does and reports whether each is at most
// 2^24 (stb's largest dimension; the maximum value must be under 65536 anyway).
bool pnm_header_ok(const std::string& b) {
    size_t i = 2;  // after "P5" / "P6"
    const auto next = [&]() -> char { return i < b.size() ? b[i++] : (++i, '\0'); };
    const auto eof = [&] { return i >= b.size(); };
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
    char c = next();
    for (int field = 0; field < 3; ++field) {
        for (;;) {  // stbi__pnm_skip_whitespace: blanks and # comments
            while (!eof() && space(c)) c = next();
            if (eof() || c != '#') break;
            while (!eof() && c != '\n' && c != '\r') c = next();
        }
        int64_t v = 0;
        while (!eof() && c >= '0' && c <= '9') {
            v = v * 10 + (c - '0');
            if (v > (int64_t{1} << 24)) return false;
            c = next();
        }
    }
    return true;
}
}  // namespace

Tensor decode_image(const std::string& bytes, const std::string& name, int64_t max_pixels) {
    if (bytes.empty()) throw IOError(name + ": empty file, not an image");
    if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
        throw IOError(name + ": file too large to decode");
    if (const char* f = unsupported_format(bytes))
        throw IOError(name + ": " + f + " images are not supported (PNG, JPEG, BMP, TGA, PGM/PPM are)");
    if (starts_with(bytes, "\xFF\xD8", 2) && !jpeg_huffman_tables_ok(bytes))
        throw IOError(name + ": cannot decode image (corrupt JPEG: a Huffman table has more than 256 codes)");
    if ((starts_with(bytes, "P5", 2) || starts_with(bytes, "P6", 2)) && !pnm_header_ok(bytes))
        throw IOError(name + ": cannot decode image (corrupt PGM/PPM header: a size or maximum value beyond 2^24)");
    const auto* buf = reinterpret_cast<const stbi_uc*>(bytes.data());
    const int len = static_cast<int>(bytes.size());
    const auto too_large = [&](int64_t w, int64_t h) {
        return IOError(name + ": image of " + std::to_string(w) + " x " + std::to_string(h) + " pixels exceeds fsad's limit of " +
                       std::to_string(max_pixels) + " pixels" + (max_pixels == kMaxImagePixels ? " (io::kMaxImagePixels)" : "") +
                       "; not decoded");
    };
    // a PNG's size is read here: stb's header check refuses PNGs over 2^30 bytes as an unknown type
    if (starts_with(bytes, "\x89PNG\r\n\x1a\n", 8) && bytes.size() >= 24 && bytes.compare(12, 4, "IHDR") == 0) {
        const auto be32 = [&](size_t i) {
            return (int64_t{buf[i]} << 24) | (int64_t{buf[i + 1]} << 16) | (int64_t{buf[i + 2]} << 8) | int64_t{buf[i + 3]};
        };
        const int64_t pw = be32(16), ph = be32(20);  // each below 2^32: their product may not fit
        if (pw > 0 && ph > 0 && (pw > max_pixels || ph > max_pixels / pw)) throw too_large(pw, ph);
    }
    int w = 0, h = 0, c = 0;
    if (!stbi_info_from_memory(buf, len, &w, &h, &c)) throw IOError(name + ": cannot decode image (" + stb_reason() + ")");
    if (w <= 0 || h <= 0) throw IOError(name + ": image has zero size");
    // the header's size is checked before anything is allocated: a few bytes can claim 60000 x 60000
    if (static_cast<int64_t>(w) * h > max_pixels) throw too_large(w, h);
    const bool is16 = stbi_is_16_bit_from_memory(buf, len);
    Tensor out = Tensor::empty(Shape{3, h, w});
    const int64_t hw = static_cast<int64_t>(h) * w;
    auto store = [&](auto* px, float scale) {
        for (int64_t i = 0; i < hw; ++i) {
            const auto* p = px + i * c;
            float r, g, b;
            if (c <= 2) r = g = b = static_cast<float>(p[0]) * scale;  // gray (+alpha)
            else {
                r = static_cast<float>(p[0]) * scale;
                g = static_cast<float>(p[1]) * scale;
                b = static_cast<float>(p[2]) * scale;
            }
            out.data()[i] = r;
            out.data()[hw + i] = g;
            out.data()[2 * hw + i] = b;
        }
    };
    if (is16) {
        int lw = 0, lh = 0;
        stbi_us* px = stbi_load_16_from_memory(buf, len, &lw, &lh, &c, 0);
        if (!px) throw IOError(name + ": cannot decode image (" + stb_reason() + ")");
        if (lw != w || lh != h) {
            stbi_image_free(px);
            throw IOError(name + ": inconsistent image header (decoded size differs from the header's)");
        }
        store(px, 1.0f / 65535.0f);
        stbi_image_free(px);
    } else {
        int lw = 0, lh = 0;
        stbi_uc* px = stbi_load_from_memory(buf, len, &lw, &lh, &c, 0);
        if (!px) throw IOError(name + ": cannot decode image (" + stb_reason() + ")");
        if (lw != w || lh != h) {
            stbi_image_free(px);
            throw IOError(name + ": inconsistent image header (decoded size differs from the header's)");
        }
        store(px, 1.0f / 255.0f);
        stbi_image_free(px);
    }
    return out;
}

Tensor load_image(const std::string& path) { return decode_image(read_file(path), path); }

Tensor resize_bilinear(const Tensor& img, int64_t oh, int64_t ow) {
    FSAD_CHECK(img.ndim() == 3, "resize_bilinear: expected [C,H,W], got ", img.shape().str());
    FSAD_CHECK(oh > 0 && ow > 0, "resize_bilinear: output size must be positive, got ", oh, "x", ow);
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2);
    FSAD_CHECK(h > 0 && w > 0, "resize_bilinear: empty input ", img.shape().str());
    Tensor out = Tensor::empty(Shape{c, oh, ow});
    const float sy = static_cast<float>(h) / static_cast<float>(oh), sx = static_cast<float>(w) / static_cast<float>(ow);
    for (int64_t y = 0; y < oh; ++y) {
        float fy = std::max(0.0f, (static_cast<float>(y) + 0.5f) * sy - 0.5f);
        int64_t y0 = std::min<int64_t>(static_cast<int64_t>(fy), h - 1), y1 = std::min<int64_t>(y0 + 1, h - 1);
        float ly = fy - static_cast<float>(y0);
        for (int64_t x = 0; x < ow; ++x) {
            float fx = std::max(0.0f, (static_cast<float>(x) + 0.5f) * sx - 0.5f);
            int64_t x0 = std::min<int64_t>(static_cast<int64_t>(fx), w - 1), x1 = std::min<int64_t>(x0 + 1, w - 1);
            float lx = fx - static_cast<float>(x0);
            for (int64_t k = 0; k < c; ++k) {
                const float* p = img.data() + k * h * w;
                float v = (1 - ly) * ((1 - lx) * p[y0 * w + x0] + lx * p[y0 * w + x1]) +
                          ly * ((1 - lx) * p[y1 * w + x0] + lx * p[y1 * w + x1]);
                out.data()[(k * oh + y) * ow + x] = v;
            }
        }
    }
    return out;
}

namespace {
// One separable pass of Pillow's resampling (src/libImaging/Resample.c, precompute_coeffs):
// output i covers input centre (i + 0.5) * scale, filter support max(scale, 1), triangle
// weights normalised to sum 1.
struct Taps {
    std::vector<int64_t> start;
    std::vector<int64_t> count;
    std::vector<double> w;  // count.size() x max_taps
    int64_t max_taps = 0;
};
Taps taps(int64_t in, int64_t out) {
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    const double fscale = std::max(scale, 1.0), support = fscale;  // bilinear support 1.0
    Taps t;
    t.max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
    t.start.resize(static_cast<size_t>(out));
    t.count.resize(static_cast<size_t>(out));
    t.w.assign(static_cast<size_t>(out * t.max_taps), 0.0);
    for (int64_t i = 0; i < out; ++i) {
        const double centre = (static_cast<double>(i) + 0.5) * scale;
        const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(centre - support + 0.5));
        const int64_t hi = std::min<int64_t>(in, static_cast<int64_t>(centre + support + 0.5));
        double sum = 0;
        int64_t n = 0;
        for (int64_t j = lo; j < hi && n < t.max_taps; ++j, ++n) {
            const double x = (static_cast<double>(j) - centre + 0.5) / fscale;
            const double v = std::max(0.0, 1.0 - std::fabs(x));
            t.w[static_cast<size_t>(i * t.max_taps + n)] = v;
            sum += v;
        }
        for (int64_t k = 0; k < n; ++k)
            if (sum != 0) t.w[static_cast<size_t>(i * t.max_taps + k)] /= sum;
        t.start[static_cast<size_t>(i)] = lo;
        t.count[static_cast<size_t>(i)] = n;
    }
    return t;
}
}  // namespace

Tensor resize_antialias(const Tensor& img, int64_t oh, int64_t ow) {
    FSAD_CHECK(img.ndim() == 3, "resize_antialias: expected [C,H,W], got ", img.shape().str());
    FSAD_CHECK(oh > 0 && ow > 0, "resize_antialias: output size must be positive, got ", oh, "x", ow);
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2);
    FSAD_CHECK(h > 0 && w > 0, "resize_antialias: empty input ", img.shape().str());
    if (oh == h && ow == w) return img.clone();  // the filter at scale 1 is the identity (1 ms at 224 px)
    const Taps tx = taps(w, ow), ty = taps(h, oh);
    Tensor mid = Tensor::empty(Shape{c, h, ow}), out = Tensor::empty(Shape{c, oh, ow});
    for (int64_t k = 0; k < c; ++k)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < ow; ++x) {
                double s = 0;
                const float* row = img.data() + (k * h + y) * w + tx.start[static_cast<size_t>(x)];
                for (int64_t n = 0; n < tx.count[static_cast<size_t>(x)]; ++n)
                    s += tx.w[static_cast<size_t>(x * tx.max_taps + n)] * row[n];
                mid.data()[(k * h + y) * ow + x] = static_cast<float>(s);
            }
    for (int64_t k = 0; k < c; ++k)
        for (int64_t y = 0; y < oh; ++y)
            for (int64_t x = 0; x < ow; ++x) {
                double s = 0;
                for (int64_t n = 0; n < ty.count[static_cast<size_t>(y)]; ++n)
                    s += ty.w[static_cast<size_t>(y * ty.max_taps + n)] *
                         mid.data()[(k * h + ty.start[static_cast<size_t>(y)] + n) * ow + x];
                out.data()[(k * oh + y) * ow + x] = static_cast<float>(s);
            }
    return out;
}

Tensor resize_short_center_crop(const Tensor& img, int64_t short_side, int64_t oh, int64_t ow) {
    FSAD_CHECK(img.ndim() == 3 && img.dim(1) > 0 && img.dim(2) > 0, "resize_short_center_crop: expected [C,H,W], got ",
               img.shape().str());
    const int64_t h = img.dim(1), w = img.dim(2);
    const int64_t nh = h <= w ? short_side : std::max<int64_t>(1, std::lround(static_cast<double>(h) * static_cast<double>(short_side) / static_cast<double>(w)));
    const int64_t nw = h <= w ? std::max<int64_t>(1, std::lround(static_cast<double>(w) * static_cast<double>(short_side) / static_cast<double>(h))) : short_side;
    FSAD_CHECK(nh >= oh && nw >= ow, "resize_short_center_crop: crop ", oh, "x", ow, " larger than the resized image ", nh,
               "x", nw);
    Tensor r = resize_antialias(img, nh, nw);
    const int64_t y0 = (nh - oh) / 2, x0 = (nw - ow) / 2;
    Tensor out = Tensor::empty(Shape{img.dim(0), oh, ow});
    for (int64_t k = 0; k < img.dim(0); ++k)
        for (int64_t y = 0; y < oh; ++y)
            std::copy(r.data() + (k * nh + y0 + y) * nw + x0, r.data() + (k * nh + y0 + y) * nw + x0 + ow,
                      out.data() + (k * oh + y) * ow);
    return out;
}

void imagenet_normalize_into(const Tensor& img, float* dst) {
    FSAD_CHECK(img.ndim() == 3 && img.dim(0) == 3, "imagenet_normalize: expected [3,H,W], got ", img.shape().str());
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    const int64_t hw = img.dim(1) * img.dim(2);
    const float* src = img.data();
    for (int64_t k = 0; k < 3; ++k)
        for (int64_t i = 0; i < hw; ++i) dst[k * hw + i] = (src[k * hw + i] - mean[k]) / stdv[k];
}

Tensor imagenet_normalize(const Tensor& img) {
    Tensor out = Tensor::empty(img.shape());
    imagenet_normalize_into(img, out.data());
    return out;
}

namespace {
std::vector<unsigned char> to_bytes(const Tensor& img, const char* what) {
    FSAD_CHECK(img.ndim() == 3 && (img.dim(0) == 3 || img.dim(0) == 1), what, ": expected [3,H,W] or [1,H,W], got ",
               img.shape().str());
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2);
    std::vector<unsigned char> px(static_cast<size_t>(h * w * c));
    for (int64_t i = 0; i < h * w; ++i)
        for (int64_t k = 0; k < c; ++k)
            px[static_cast<size_t>(i * c + k)] = static_cast<unsigned char>(
                std::lround(std::clamp(img.data()[k * h * w + i], 0.0f, 1.0f) * 255.0f));
    return px;
}
void append_sink(void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}
}  // namespace

std::string encode_png(const Tensor& img) {
    std::vector<unsigned char> px = to_bytes(img, "encode_png");
    const int c = static_cast<int>(img.dim(0)), h = static_cast<int>(img.dim(1)), w = static_cast<int>(img.dim(2));
    std::string bytes;
    if (!stbi_write_png_to_func(append_sink, &bytes, w, h, c, px.data(), w * c))
        throw IOError("PNG encoding of a " + img.shape().str() + " image failed");
    return bytes;
}

std::string encode_jpeg(const Tensor& img, int quality) {
    FSAD_CHECK(quality >= 1 && quality <= 100, "encode_jpeg: quality ", quality, " outside 1..100");
    std::vector<unsigned char> px = to_bytes(img, "encode_jpeg");
    const int c = static_cast<int>(img.dim(0)), h = static_cast<int>(img.dim(1)), w = static_cast<int>(img.dim(2));
    std::string bytes;
    if (!stbi_write_jpg_to_func(append_sink, &bytes, w, h, c, px.data(), quality))
        throw IOError("JPEG encoding of a " + img.shape().str() + " image failed");
    return bytes;
}

void write_png(const std::string& path, const Tensor& img) {
    std::string bytes;
    try {
        bytes = encode_png(img);
    } catch (const Error& e) {
        throw IOError(path + ": " + e.what());
    }
    write_file_atomic(path, bytes);
}

Tensor heatmap_overlay(const Tensor& img, const Tensor& map, float lo, float hi) {
    FSAD_CHECK(img.ndim() == 3 && img.dim(0) == 3 && map.ndim() == 2 && map.dim(0) == img.dim(1) && map.dim(1) == img.dim(2),
               "heatmap_overlay: needs img [3,H,W] and map [H,W] of the same size");
    FSAD_CHECK(hi > lo, "heatmap_overlay: hi must exceed lo");
    const int64_t hw = map.numel();
    Tensor out = Tensor::empty(img.shape());
    for (int64_t i = 0; i < hw; ++i) {
        const float t = std::clamp((map.data()[i] - lo) / (hi - lo), 0.0f, 1.0f);
        const float rgb[3] = {std::clamp(1.5f - std::fabs(4 * t - 3), 0.0f, 1.0f), std::clamp(1.5f - std::fabs(4 * t - 2), 0.0f, 1.0f),
                              std::clamp(1.5f - std::fabs(4 * t - 1), 0.0f, 1.0f)};
        for (int c = 0; c < 3; ++c) out.data()[c * hw + i] = 0.5f * img.data()[c * hw + i] + 0.5f * rgb[c];
    }
    return out;
}

}  // namespace fsad::io
