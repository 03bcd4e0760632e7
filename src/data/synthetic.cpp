#include "fsad/data/synthetic.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "fsad/core/error.hpp"
#include "fsad/io/image.hpp"

namespace fsad::data {
namespace fs = std::filesystem;

namespace {

constexpr float kPi = 3.14159265358979f;

// Smooth value noise: random values on a (cells+1)^2 lattice, smoothstep interpolation.
struct ValueNoise {
    int64_t cells;
    std::vector<float> v;
    ValueNoise(int64_t c, Rng& rng) : cells(c), v(static_cast<size_t>((c + 1) * (c + 1))) {
        for (auto& x : v) x = rng.uniform(-1.0f, 1.0f);
    }
    float at(float u, float w) const {  // u, w in [0, 1]
        const float fu = std::clamp(u, 0.0f, 1.0f) * static_cast<float>(cells), fw = std::clamp(w, 0.0f, 1.0f) * static_cast<float>(cells);
        const int64_t i = std::min<int64_t>(static_cast<int64_t>(fu), cells - 1), j = std::min<int64_t>(static_cast<int64_t>(fw), cells - 1);
        float a = fu - static_cast<float>(i), b = fw - static_cast<float>(j);
        a = a * a * (3 - 2 * a);
        b = b * b * (3 - 2 * b);
        auto g = [&](int64_t y, int64_t x) { return v[static_cast<size_t>(y * (cells + 1) + x)]; };
        return (1 - a) * ((1 - b) * g(i, j) + b * g(i, j + 1)) + a * ((1 - b) * g(i + 1, j) + b * g(i + 1, j + 1));
    }
};

float fbm(const std::vector<ValueNoise>& oct, float u, float w) {
    float s = 0, amp = 1, norm = 0;
    for (const auto& o : oct) {
        s += amp * o.at(u, w);
        norm += amp;
        amp *= 0.5f;
    }
    return s / norm;
}

std::vector<ValueNoise> octaves(Rng& rng, int64_t first, int n) {
    std::vector<ValueNoise> o;
    for (int i = 0; i < n; ++i) o.emplace_back(first << i, rng);
    return o;
}

void set_px(Tensor& img, int64_t y, int64_t x, float r, float g, float b) {
    const int64_t h = img.dim(1), w = img.dim(2);
    float* p = img.data();
    p[y * w + x] = std::clamp(r, 0.0f, 1.0f);
    p[h * w + y * w + x] = std::clamp(g, 0.0f, 1.0f);
    p[2 * h * w + y * w + x] = std::clamp(b, 0.0f, 1.0f);
}

// Blends colour `c` into the pixels within distance `width/2` of segment (x0,y0)-(x1,y1) with
// anti-aliased edges; `mode` 0 = replace by c scaled, 1 = multiply.
void stroke(Tensor& img, float x0, float y0, float x1, float y1, float width, const float c[3], bool multiply) {
    const int64_t h = img.dim(1), w = img.dim(2);
    const int64_t lo_x = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(x0, x1) - width - 1)));
    const int64_t hi_x = std::min<int64_t>(w - 1, static_cast<int64_t>(std::ceil(std::max(x0, x1) + width + 1)));
    const int64_t lo_y = std::max<int64_t>(0, static_cast<int64_t>(std::floor(std::min(y0, y1) - width - 1)));
    const int64_t hi_y = std::min<int64_t>(h - 1, static_cast<int64_t>(std::ceil(std::max(y0, y1) + width + 1)));
    const float dx = x1 - x0, dy = y1 - y0, len2 = std::max(dx * dx + dy * dy, 1e-6f);
    for (int64_t y = lo_y; y <= hi_y; ++y)
        for (int64_t x = lo_x; x <= hi_x; ++x) {
            const float px = static_cast<float>(x), py = static_cast<float>(y);
            const float t = std::clamp(((px - x0) * dx + (py - y0) * dy) / len2, 0.0f, 1.0f);
            const float ex = px - (x0 + t * dx), ey = py - (y0 + t * dy);
            const float d = std::sqrt(ex * ex + ey * ey);
            const float a = std::clamp(width / 2 + 0.5f - d, 0.0f, 1.0f);
            if (a <= 0) continue;
            for (int64_t k = 0; k < 3; ++k) {
                float& v = img.data()[(k * h + y) * w + x];
                v = multiply ? v * (1 - a + a * c[k]) : (1 - a) * v + a * c[k];
            }
        }
}

Tensor metal(int64_t n, Rng& rng) {
    Tensor img = Tensor::empty(Shape{3, n, n});
    std::vector<float> rows(static_cast<size_t>(n));
    float prev = 0;
    for (auto& r : rows) r = prev = 0.6f * prev + rng.normal(0.0f, 0.035f);
    const float base = rng.uniform(0.52f, 0.6f), gx = rng.uniform(-0.08f, 0.08f), gy = rng.uniform(-0.08f, 0.08f);
    const float tint = rng.uniform(0.0f, 0.04f), freq = rng.uniform(0.15f, 0.3f), ph = rng.uniform(0.0f, 2 * kPi);
    for (int64_t y = 0; y < n; ++y)
        for (int64_t x = 0; x < n; ++x) {
            const float u = static_cast<float>(x) / static_cast<float>(n), w = static_cast<float>(y) / static_cast<float>(n);
            const float v = base + rows[static_cast<size_t>(y)] + 0.02f * std::sin(freq * static_cast<float>(x) + ph) +
                            gx * (u - 0.5f) + gy * (w - 0.5f) + rng.normal(0.0f, 0.012f);
            set_px(img, y, x, v - tint, v, v + tint);
        }
    return img;
}

Tensor fabric(int64_t n, Rng& rng) {
    Tensor img = Tensor::empty(Shape{3, n, n});
    const float period = rng.uniform(5.5f, 6.5f) * static_cast<float>(n) / 128.0f;
    const float px = rng.uniform(0.0f, period), py = rng.uniform(0.0f, period);
    const float col[3] = {rng.uniform(0.55f, 0.62f), rng.uniform(0.48f, 0.54f), rng.uniform(0.36f, 0.42f)};
    auto oct = octaves(rng, 4, 3);
    for (int64_t y = 0; y < n; ++y)
        for (int64_t x = 0; x < n; ++x) {
            const float fx = (static_cast<float>(x) + px) / period, fy = (static_cast<float>(y) + py) / period;
            const int64_t cx = static_cast<int64_t>(std::floor(fx)), cy = static_cast<int64_t>(std::floor(fy));
            const bool warp = ((cx + cy) & 1) == 0;  // plain weave: which thread lies on top
            const float t = warp ? fx - static_cast<float>(cx) : fy - static_cast<float>(cy);
            const float thread = 0.75f + 0.25f * std::sin(kPi * t);
            const float gap = 0.85f + 0.15f * std::min(std::sin(kPi * (fx - static_cast<float>(cx))), std::sin(kPi * (fy - static_cast<float>(cy)))) ;
            const float v = thread * gap * (1.0f + 0.06f * fbm(oct, static_cast<float>(x) / static_cast<float>(n), static_cast<float>(y) / static_cast<float>(n))) +
                            rng.normal(0.0f, 0.01f);
            set_px(img, y, x, col[0] * v * 1.25f, col[1] * v * 1.25f, col[2] * v * 1.25f);
        }
    return img;
}

Tensor wood(int64_t n, Rng& rng) {
    Tensor img = Tensor::empty(Shape{3, n, n});
    const float cx = rng.uniform(-1.5f, -0.8f), cy = rng.uniform(0.2f, 0.8f), rings = rng.uniform(22.0f, 28.0f);
    auto oct = octaves(rng, 3, 4);
    const float tone = rng.uniform(-0.03f, 0.03f);
    for (int64_t y = 0; y < n; ++y)
        for (int64_t x = 0; x < n; ++x) {
            const float u = static_cast<float>(x) / static_cast<float>(n), w = static_cast<float>(y) / static_cast<float>(n);
            const float d = std::sqrt((u - cx) * (u - cx) + 0.15f * (w - cy) * (w - cy));
            const float turb = 0.35f * fbm(oct, u, w);
            const float g = 0.5f + 0.5f * std::sin(2 * kPi * (d * rings + turb));
            const float v = 0.55f + tone + 0.12f * std::pow(g, 3.0f) + rng.normal(0.0f, 0.01f);
            set_px(img, y, x, v * 1.05f, v * 0.78f, v * 0.5f);
        }
    return img;
}

Tensor stone(int64_t n, Rng& rng) {
    Tensor img = Tensor::empty(Shape{3, n, n});
    auto oct = octaves(rng, 8, 4);
    const float base = rng.uniform(0.5f, 0.56f);
    for (int64_t y = 0; y < n; ++y)
        for (int64_t x = 0; x < n; ++x) {
            const float u = static_cast<float>(x) / static_cast<float>(n), w = static_cast<float>(y) / static_cast<float>(n);
            const float f = fbm(oct, u, w);
            float v = base + 0.12f * f + rng.normal(0.0f, 0.03f);
            if (rng.uniform() < 0.01f) v += rng.uniform(-0.15f, 0.15f);  // grains
            set_px(img, y, x, v * 0.95f, v, v * 0.93f);
        }
    return img;
}

}  // namespace

std::vector<std::string> synthetic_products() { return {"metal", "fabric", "wood", "stone"}; }
std::vector<std::string> synthetic_defects() { return {"scratch", "hole", "stain", "crack"}; }

Tensor synthetic_part(const std::string& product, int64_t size, Rng& rng) {
    FSAD_CHECK(size >= 16 && size <= 4096, "synthetic_part: size ", size, " outside 16..4096");
    if (product == "metal") return metal(size, rng);
    if (product == "fabric") return fabric(size, rng);
    if (product == "wood") return wood(size, rng);
    if (product == "stone") return stone(size, rng);
    throw Error("unknown synthetic product '" + product + "' (metal, fabric, wood, stone)");
}

Tensor add_defect(const Tensor& part, const std::string& defect, Rng& rng) {
    FSAD_CHECK(part.ndim() == 3 && part.dim(0) == 3, "add_defect: expected [3,H,W], got ", part.shape().str());
    Tensor img = part.clone();
    const float n = static_cast<float>(std::min(img.dim(1), img.dim(2))), s = n / 128.0f;
    const float cx = rng.uniform(0.25f, 0.75f) * n, cy = rng.uniform(0.25f, 0.75f) * n;
    if (defect == "scratch") {
        const float ang = rng.uniform(0.0f, kPi), len = rng.uniform(0.25f, 0.45f) * n;
        const bool bright = rng.bernoulli(0.5f);
        const float c[3] = {bright ? 0.92f : 0.2f, bright ? 0.92f : 0.2f, bright ? 0.92f : 0.2f};
        stroke(img, cx - 0.5f * len * std::cos(ang), cy - 0.5f * len * std::sin(ang), cx + 0.5f * len * std::cos(ang),
               cy + 0.5f * len * std::sin(ang), rng.uniform(1.0f, 1.8f) * s, c, false);
    } else if (defect == "hole") {
        const float r = rng.uniform(3.0f, 6.0f) * s;
        const float rim[3] = {1.25f, 1.25f, 1.25f}, dark[3] = {0.12f, 0.1f, 0.1f};
        stroke(img, cx, cy, cx, cy, 2 * r + 3 * s, rim, true);
        stroke(img, cx, cy, cx, cy, 2 * r, dark, false);
    } else if (defect == "stain") {
        const float r = rng.uniform(9.0f, 16.0f) * s, depth = rng.uniform(0.35f, 0.5f);
        const float tint[3] = {1.0f, 0.9f, 0.6f};
        const int64_t h = img.dim(1), w = img.dim(2);
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                const float dx = (static_cast<float>(x) - cx) / r, dy = (static_cast<float>(y) - cy) / (0.7f * r);
                const float a = depth * std::exp(-2.0f * (dx * dx + dy * dy));
                for (int64_t k = 0; k < 3; ++k) {
                    float& v = img.data()[(k * h + y) * w + x];
                    v = v * (1 - a) + a * v * 0.55f * tint[k];
                }
            }
    } else if (defect == "crack") {
        const float dark[3] = {0.18f, 0.16f, 0.15f};
        float x = cx, y = cy, ang = rng.uniform(0.0f, 2 * kPi);
        const int segs = static_cast<int>(rng.integer(10, 16));
        for (int i = 0; i < segs; ++i) {
            ang += rng.uniform(-0.6f, 0.6f);
            const float step = rng.uniform(2.5f, 4.5f) * s;
            const float nx = x + step * std::cos(ang), ny = y + step * std::sin(ang);
            stroke(img, x, y, nx, ny, 1.2f * s, dark, false);
            if (rng.bernoulli(0.15f)) {  // a short branch
                const float ba = ang + rng.uniform(-1.2f, 1.2f), bl = rng.uniform(4.0f, 8.0f) * s;
                stroke(img, nx, ny, nx + bl * std::cos(ba), ny + bl * std::sin(ba), 0.9f * s, dark, false);
            }
            x = nx;
            y = ny;
        }
    } else {
        throw Error("unknown synthetic defect '" + defect + "' (scratch, hole, stain, crack)");
    }
    for (int64_t i = 0; i < img.numel(); ++i) img.data()[i] = std::clamp(img.data()[i], 0.0f, 1.0f);
    return img;
}

Dataset synthetic_dataset(const SyntheticOptions& opt) {
    Dataset ds;
    ds.kind = "synthetic";
    ds.root = "generated in memory";
    const auto products = opt.products.empty() ? synthetic_products() : opt.products;
    for (size_t p = 0; p < products.size(); ++p) {
        Category c;
        c.name = products[p];
        Rng rng(opt.seed * 1000003u + p * 7919u + 17u);
        auto make = [&](int label, const std::string& kind, int64_t i) {
            Sample s;
            s.label = label;
            s.kind = kind;
            s.name = "synthetic/" + c.name + "/" + kind + "/" + std::to_string(i);
            s.image = synthetic_part(c.name, opt.size, rng);
            if (label) s.image = add_defect(s.image, kind, rng);
            return s;
        };
        for (int64_t i = 0; i < opt.pool; ++i) c.pool.push_back(make(0, "good", i));
        for (int64_t i = 0; i < opt.test_normal; ++i) c.test.push_back(make(0, "good", opt.pool + i));
        for (const auto& d : synthetic_defects())
            for (int64_t i = 0; i < opt.test_per_defect; ++i) c.test.push_back(make(1, d, i));
        ds.categories.push_back(std::move(c));
    }
    return ds;
}

void write_dataset(const Dataset& ds, const std::string& root, const std::string& layout) {
    FSAD_CHECK(layout == "mvtec" || layout == "folder", "write_dataset: unknown layout '", layout, "' (mvtec, folder)");
    for (const auto& c : ds.categories) {
        const fs::path base = fs::path(root) / c.name;
        auto put = [&](const fs::path& dir, const Sample& s, size_t i) {
            fs::create_directories(dir);
            char name[32];
            std::snprintf(name, sizeof name, "%03zu.png", i);
            io::write_png((dir / name).string(), materialize(s));
        };
        for (size_t i = 0; i < c.pool.size(); ++i)
            put(layout == "mvtec" ? base / "train" / "good" : base / "good", c.pool[i], i);
        std::vector<size_t> count;
        std::vector<std::string> kinds;
        for (const auto& s : c.test) {
            auto it = std::find(kinds.begin(), kinds.end(), s.kind);
            size_t k = static_cast<size_t>(it - kinds.begin());
            if (it == kinds.end()) {
                kinds.push_back(s.kind);
                count.push_back(0);
            }
            // folder layout: normal test parts join good/ after the pool
            const size_t idx = layout == "folder" && s.label == 0 ? c.pool.size() + count[k]++ : count[k]++;
            put(layout == "mvtec" ? base / "test" / s.kind : base / s.kind, s, idx);
        }
    }
}

}  // namespace fsad::data
