#include "fsad/io/image.hpp"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fsad/io/safetensors.hpp"

namespace fsad::io {

Tensor decode_image(const std::string& bytes, const std::string& name) {
    if (bytes.empty()) throw IOError(name + ": empty file, not an image");
    if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
        throw IOError(name + ": file too large to decode");
    const auto* buf = reinterpret_cast<const stbi_uc*>(bytes.data());
    const int len = static_cast<int>(bytes.size());
    int w = 0, h = 0, c = 0;
    if (!stbi_info_from_memory(buf, len, &w, &h, &c))
        throw IOError(name + ": cannot decode image (" + stbi_failure_reason() + ")");
    if (w <= 0 || h <= 0) throw IOError(name + ": image has zero size");
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
        stbi_us* px = stbi_load_16_from_memory(buf, len, &w, &h, &c, 0);
        if (!px) throw IOError(name + ": cannot decode image (" + stbi_failure_reason() + ")");
        store(px, 1.0f / 65535.0f);
        stbi_image_free(px);
    } else {
        stbi_uc* px = stbi_load_from_memory(buf, len, &w, &h, &c, 0);
        if (!px) throw IOError(name + ": cannot decode image (" + stbi_failure_reason() + ")");
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

Tensor imagenet_normalize(const Tensor& img) {
    FSAD_CHECK(img.ndim() == 3 && img.dim(0) == 3, "imagenet_normalize: expected [3,H,W], got ", img.shape().str());
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    Tensor out = Tensor::empty(img.shape());
    const int64_t hw = img.dim(1) * img.dim(2);
    for (int64_t k = 0; k < 3; ++k)
        for (int64_t i = 0; i < hw; ++i) out.data()[k * hw + i] = (img.data()[k * hw + i] - mean[k]) / stdv[k];
    return out;
}

void write_png(const std::string& path, const Tensor& img) {
    FSAD_CHECK(img.ndim() == 3 && (img.dim(0) == 3 || img.dim(0) == 1), "write_png: expected [3,H,W] or [1,H,W], got ",
               img.shape().str());
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2);
    std::vector<unsigned char> px(static_cast<size_t>(h * w * c));
    for (int64_t i = 0; i < h * w; ++i)
        for (int64_t k = 0; k < c; ++k)
            px[static_cast<size_t>(i * c + k)] = static_cast<unsigned char>(
                std::lround(std::clamp(img.data()[k * h * w + i], 0.0f, 1.0f) * 255.0f));
    std::string bytes;
    auto sink = [](void* ctx, void* data, int size) {
        static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
    };
    if (!stbi_write_png_to_func(sink, &bytes, static_cast<int>(w), static_cast<int>(h), static_cast<int>(c), px.data(),
                                static_cast<int>(w * c)))
        throw IOError(path + ": PNG encoding failed");
    write_file_atomic(path, bytes);
}

}  // namespace fsad::io
