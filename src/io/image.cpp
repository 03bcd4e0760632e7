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
    size_t i = 0;  // fill bytes and the SOI are skipped as the segments are
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
    // what stb takes for a JPEG: an SOI marker, fill bytes (0xFF) allowed before it
    const size_t soi = bytes.find_first_not_of('\xFF');
    if (soi != std::string::npos && soi >= 1 && bytes[soi] == '\xD8' && !jpeg_huffman_tables_ok(bytes))
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

}  // namespace fsad::io
