#include "fsad/data/dataset.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>

#include "fsad/core/error.hpp"
#include "fsad/core/rng.hpp"
#include "fsad/data/corruptions.hpp"
#include "fsad/io/image.hpp"

namespace fsad::data {
namespace fs = std::filesystem;

namespace {

bool is_image(const fs::path& p) {
    std::string e = p.extension().string();
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    static const char* exts[] = {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif", ".pnm", ".ppm", ".pgm", ".psd", ".hdr"};
    return std::any_of(std::begin(exts), std::end(exts), [&](const char* x) { return e == x; });
}

void require_dir(const fs::path& p, const std::string& what) {
    std::error_code ec;
    if (!fs::is_directory(p, ec))
        throw IOError(p.string() + ": " + what + (fs::exists(p, ec) ? " is not a folder" : " does not exist"));
}

std::vector<std::string> sorted_subdirs(const fs::path& p) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(p))
        if (e.is_directory()) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<Sample> samples_of(const std::vector<std::string>& files, int label, const std::string& kind) {
    std::vector<Sample> out;
    for (const auto& f : files) {
        Sample s;
        s.name = f;
        s.path = f;
        s.label = label;
        s.kind = kind;
        out.push_back(std::move(s));
    }
    return out;
}

std::vector<std::string> nonempty_images(const fs::path& dir, const std::string& what, bool recursive = false) {
    require_dir(dir, what);
    std::vector<std::string> f = list_images(dir.string(), recursive);
    if (f.empty()) throw IOError(dir.string() + ": " + what + " holds no image files (png, jpg, bmp, ...)");
    return f;
}

bool wanted(const LoadOptions& opt, const std::string& cat) {
    return opt.categories.empty() || std::find(opt.categories.begin(), opt.categories.end(), cat) != opt.categories.end();
}

void check_categories_found(const Dataset& ds, const LoadOptions& opt) {
    for (const auto& c : opt.categories)
        if (std::none_of(ds.categories.begin(), ds.categories.end(), [&](const Category& k) { return k.name == c; })) {
            std::string have;
            for (const auto& k : ds.categories) have += (have.empty() ? "" : ", ") + k.name;
            throw IOError(ds.root + ": no category '" + c + "' in this " + ds.kind + " dataset (found: " + have + ")");
        }
    if (ds.categories.empty()) throw IOError(ds.root + ": no categories found for the " + ds.kind + " layout");
}

uint64_t mix(uint64_t a, uint64_t b) {  // splitmix64 of a combination: per-sample seeds
    uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

}  // namespace

std::vector<std::string> list_images(const std::string& dir, bool recursive) {
    std::vector<std::string> out;
    std::error_code ec;
    if (recursive) {
        for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
            if (it->is_regular_file() && is_image(it->path())) out.push_back(it->path().string());
    } else {
        for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
            if (it->is_regular_file() && is_image(it->path())) out.push_back(it->path().string());
    }
    if (ec) throw IOError(dir + ": cannot list the folder (" + ec.message() + ")");
    std::sort(out.begin(), out.end());
    return out;
}

Dataset load_folder(const std::string& normal_dir, const std::vector<std::string>& anomalous_dirs) {
    Dataset ds;
    ds.kind = "folder";
    ds.root = normal_dir;
    Category c;
    c.name = fs::path(normal_dir).lexically_normal().filename().string();
    if (c.name.empty()) c.name = fs::path(normal_dir).lexically_normal().parent_path().filename().string();
    c.pool = samples_of(nonempty_images(normal_dir, "the normal folder"), 0, "good");
    c.pool_rest_is_test = true;
    for (const auto& d : anomalous_dirs) {
        auto s = samples_of(nonempty_images(d, "the anomalous folder"), 1,
                            fs::path(d).lexically_normal().filename().string());
        c.test.insert(c.test.end(), s.begin(), s.end());
    }
    ds.categories.push_back(std::move(c));
    return ds;
}

Dataset load_mvtec(const std::string& root, const LoadOptions& opt) {
    Dataset ds;
    ds.kind = "mvtec";
    ds.root = root;
    require_dir(root, "the MVTec-layout root");
    for (const auto& cat : sorted_subdirs(root)) {
        if (!wanted(opt, cat)) continue;
        const fs::path base = fs::path(root) / cat;
        std::error_code ec;
        if (!fs::is_directory(base / "train", ec) && !fs::is_directory(base / "test", ec)) continue;  // not a category
        Category c;
        c.name = cat;
        c.pool = samples_of(nonempty_images(base / "train" / "good", "the category's train/good folder"), 0, "good");
        require_dir(base / "test", "the category's test folder");
        for (const auto& kind : sorted_subdirs(base / "test")) {
            auto s = samples_of(nonempty_images(base / "test" / kind, "a test folder"), kind == "good" ? 0 : 1, kind);
            if (kind != "good")
                for (auto& x : s) {  // MVTec AD's masks: ground_truth/<kind>/<stem>_mask.png
                    const fs::path m = base / "ground_truth" / kind / (fs::path(x.path).stem().string() + "_mask.png");
                    if (fs::is_regular_file(m, ec)) x.mask_path = m.string();
                }
            c.test.insert(c.test.end(), s.begin(), s.end());
        }
        if (c.test.empty())
            throw IOError((base / "test").string() + ": no test images (expected test/good and test/<defect> folders)");
        ds.categories.push_back(std::move(c));
    }
    if (ds.categories.empty() && opt.categories.empty())
        throw IOError(root + ": no MVTec-layout category found (expected <category>/train/good and <category>/test/<kind>)");
    check_categories_found(ds, opt);
    return ds;
}

Dataset load_magnetic_tile(const std::string& root) {
    Dataset ds;
    ds.kind = "magnetic-tile";
    ds.root = root;
    require_dir(root, "the Magnetic Tile root");
    std::error_code ec;
    Category c;
    c.name = "magnetic-tile";
    c.pool = samples_of(nonempty_images(fs::path(root) / "MT_Free" / "Imgs", "MT_Free/Imgs"), 0, "good");
    c.pool_rest_is_test = true;
    for (const auto& d : sorted_subdirs(root)) {
        if (d.rfind("MT_", 0) != 0 || d == "MT_Free") continue;
        std::vector<std::string> files = nonempty_images(fs::path(root) / d / "Imgs", d + "/Imgs");
        // the dataset stores a .png defect mask beside every .jpg image: keep the photographs
        std::vector<std::string> jpgs;
        for (auto& f : files)
            if (fs::path(f).extension() != ".png") jpgs.push_back(f);
        auto s = samples_of(jpgs.empty() ? files : jpgs, 1, d.substr(3));
        for (auto& x : s) {  // the defect mask: the same name with .png
            const fs::path m = fs::path(x.path).replace_extension(".png");
            if (m != fs::path(x.path) && fs::is_regular_file(m, ec)) x.mask_path = m.string();
        }
        c.test.insert(c.test.end(), s.begin(), s.end());
    }
    // MT_Free holds .jpg photographs and .png masks as well
    std::vector<Sample> pool;
    for (auto& s : c.pool)
        if (fs::path(s.path).extension() != ".png") pool.push_back(s);
    if (!pool.empty()) c.pool = std::move(pool);
    if (c.test.empty()) throw IOError(root + ": no MT_<defect>/Imgs folders with images (Magnetic Tile layout)");
    ds.categories.push_back(std::move(c));
    return ds;
}

Dataset load_aitex(const std::string& root, const LoadOptions& opt) {
    Dataset ds;
    ds.kind = "aitex";
    ds.root = root;
    require_dir(root, "the AITEX root");
    const int64_t per_image = opt.test_limit > 0 ? opt.test_limit : 5;
    std::error_code ec;
    const bool masks = fs::is_directory(fs::path(root) / "Mask_images", ec) &&
                       !list_images((fs::path(root) / "Mask_images").string()).empty();
    Category c;
    c.name = "aitex";
    c.pool_rest_is_test = masks;  // patch-level: undrawn normal patches are tested
    uint64_t k = 0;
    const auto normals = nonempty_images(fs::path(root) / "NODefect_images", "NODefect_images", true);
    for (size_t n = 0; n < normals.size(); ++n) {
        const std::string& f = normals[n];
        if (!masks && n % 5 == 4) {  // image-level: a held-out normal image, scored whole
            Sample s = file_sample(f, 0, "good");
            s.tile = 256;
            c.test.push_back(std::move(s));
            continue;
        }
        for (int64_t i = 0; i < per_image; ++i) {
            Sample s;
            s.path = f;
            s.name = f + "#" + std::to_string(i);
            s.kind = "good";
            s.crop_size = 256;
            s.seed = mix(opt.seed, k++);
            c.pool.push_back(std::move(s));
        }
    }
    if (c.pool.empty()) throw IOError(root + "/NODefect_images: too few normal images to draw shots from");
    for (const auto& f : nonempty_images(fs::path(root) / "Defect_images", "Defect_images")) {
        Sample s;
        s.path = f;
        s.name = f;
        s.label = 1;
        s.crop_size = 256;
        s.seed = mix(opt.seed, k++);
        const std::string stem = fs::path(f).stem().string();
        // AITEX file names: <id>_<defect code>_<fabric>.png; masks: Mask_images/<stem>_mask.png
        const size_t u1 = stem.find('_'), u2 = stem.find('_', u1 == std::string::npos ? 0 : u1 + 1);
        s.kind = (u1 != std::string::npos && u2 != std::string::npos) ? "defect-" + stem.substr(u1 + 1, u2 - u1 - 1) : "defect";
        const fs::path m = fs::path(root) / "Mask_images" / (stem + "_mask.png");
        if (fs::is_regular_file(m, ec)) s.mask_path = m.string();
        if (!masks) {
            s.crop_size = 0;
            s.tile = 256;
        }
        c.test.push_back(std::move(s));
    }
    ds.categories.push_back(std::move(c));
    return ds;
}

Dataset load_cifar10(const std::string& root, const LoadOptions& opt) {
    Dataset ds;
    ds.kind = "cifar10";
    ds.root = root;
    require_dir(fs::path(root) / "train", "the CIFAR train folder");
    require_dir(fs::path(root) / "test", "the CIFAR test folder");
    const std::vector<std::string> corr = opt.corruptions.empty() ? default_corruptions() : opt.corruptions;
    const auto known = all_corruptions();
    for (const auto& n : corr)
        if (std::find(known.begin(), known.end(), n) == known.end()) throw Error("unknown corruption '" + n + "'");
    for (const auto& cls : sorted_subdirs(fs::path(root) / "train")) {
        if (!wanted(opt, cls)) continue;
        Category c;
        c.name = cls;
        c.pool = samples_of(nonempty_images(fs::path(root) / "train" / cls, "a CIFAR train class folder"), 0, "good");
        std::vector<std::string> test = nonempty_images(fs::path(root) / "test" / cls, "the class's test folder");
        if (opt.test_limit > 0 && static_cast<int64_t>(test.size()) > opt.test_limit)
            test.resize(static_cast<size_t>(opt.test_limit));
        c.test = samples_of(test, 0, "good");
        uint64_t k = 0;
        for (const auto& n : corr)
            for (const auto& f : test) {
                Sample s;
                s.path = f;
                s.name = f + "#" + n;
                s.label = 1;
                s.kind = n;
                s.corruption = n;
                s.seed = mix(opt.seed, k++);
                c.test.push_back(std::move(s));
            }
        ds.categories.push_back(std::move(c));
    }
    check_categories_found(ds, opt);
    return ds;
}

std::string cifar100_superclass(const std::string& fine) {
    static const std::map<std::string, std::vector<std::string>> coarse = {
        {"aquatic_mammals", {"beaver", "dolphin", "otter", "seal", "whale"}},
        {"fish", {"aquarium_fish", "flatfish", "ray", "shark", "trout"}},
        {"flowers", {"orchid", "poppy", "rose", "sunflower", "tulip"}},
        {"food_containers", {"bottle", "bowl", "can", "cup", "plate"}},
        {"fruit_and_vegetables", {"apple", "mushroom", "orange", "pear", "sweet_pepper"}},
        {"household_electrical_devices", {"clock", "keyboard", "lamp", "telephone", "television"}},
        {"household_furniture", {"bed", "chair", "couch", "table", "wardrobe"}},
        {"insects", {"bee", "beetle", "butterfly", "caterpillar", "cockroach"}},
        {"large_carnivores", {"bear", "leopard", "lion", "tiger", "wolf"}},
        {"large_man-made_outdoor_things", {"bridge", "castle", "house", "road", "skyscraper"}},
        {"large_natural_outdoor_scenes", {"cloud", "forest", "mountain", "plain", "sea"}},
        {"large_omnivores_and_herbivores", {"camel", "cattle", "chimpanzee", "elephant", "kangaroo"}},
        {"medium_mammals", {"fox", "porcupine", "possum", "raccoon", "skunk"}},
        {"non-insect_invertebrates", {"crab", "lobster", "snail", "spider", "worm"}},
        {"people", {"baby", "boy", "girl", "man", "woman"}},
        {"reptiles", {"crocodile", "dinosaur", "lizard", "snake", "turtle"}},
        {"small_mammals", {"hamster", "mouse", "rabbit", "shrew", "squirrel"}},
        {"trees", {"maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"}},
        {"vehicles_1", {"bicycle", "bus", "motorcycle", "pickup_truck", "train"}},
        {"vehicles_2", {"lawn_mower", "rocket", "streetcar", "tank", "tractor"}},
    };
    for (const auto& [c, fines] : coarse)
        if (c == fine || std::find(fines.begin(), fines.end(), fine) != fines.end()) return c;
    return "";
}

Dataset load_cifar100(const std::string& root, const LoadOptions& opt) {
    // load every class folder as CIFAR-10 does, then merge fine classes into their superclass
    LoadOptions all = opt;
    all.categories.clear();
    Dataset fine = load_cifar10(root, all);
    Dataset ds;
    ds.kind = "cifar100";
    ds.root = root;
    for (auto& c : fine.categories) {
        const std::string sup = cifar100_superclass(c.name);
        if (sup.empty())
            throw IOError(root + "/train/" + c.name + ": not a CIFAR-100 class or superclass name");
        auto it = std::find_if(ds.categories.begin(), ds.categories.end(), [&](const Category& k) { return k.name == sup; });
        if (it == ds.categories.end()) {
            ds.categories.push_back(Category{sup, {}, {}, false});
            it = ds.categories.end() - 1;
        }
        it->pool.insert(it->pool.end(), c.pool.begin(), c.pool.end());
        it->test.insert(it->test.end(), c.test.begin(), c.test.end());
    }
    // keep normals first (as load_cifar10 orders them): clean test images, then corruptions
    for (auto& c : ds.categories)
        std::stable_sort(c.test.begin(), c.test.end(), [](const Sample& a, const Sample& b) { return a.label < b.label; });
    if (!opt.categories.empty()) {
        std::vector<Category> keep;
        for (auto& c : ds.categories)
            if (wanted(opt, c.name)) keep.push_back(std::move(c));
        ds.categories = std::move(keep);
    }
    check_categories_found(ds, opt);
    return ds;
}

std::vector<std::string> dataset_kinds() { return {"folder", "mvtec", "magnetic-tile", "aitex", "cifar10", "cifar100"}; }

Dataset load_dataset(const std::string& kind, const std::string& root, const LoadOptions& opt) {
    if (kind == "folder") {
        // ROOT holds good/ (normal) and one folder per anomaly kind
        require_dir(root, "the folder-layout root");
        std::vector<std::string> anomalous;
        for (const auto& d : sorted_subdirs(root))
            if (d != "good") anomalous.push_back((fs::path(root) / d).string());
        Dataset ds = load_folder((fs::path(root) / "good").string(), anomalous);
        ds.root = root;
        ds.categories[0].name = fs::path(root).lexically_normal().filename().string();
        return ds;
    }
    if (kind == "mvtec") return load_mvtec(root, opt);
    if (kind == "magnetic-tile") return load_magnetic_tile(root);
    if (kind == "aitex") return load_aitex(root, opt);
    if (kind == "cifar10") return load_cifar10(root, opt);
    if (kind == "cifar100") return load_cifar100(root, opt);
    throw Error("unknown dataset kind '" + kind + "' (folder, mvtec, magnetic-tile, aitex, cifar10, cifar100)");
}

std::vector<Tensor> tiles(const Tensor& img, int64_t size) {
    FSAD_CHECK(img.ndim() == 3 && size > 0, "tiles: expected [C,H,W] and a positive size");
    const int64_t c = img.dim(0), h = img.dim(1), w = img.dim(2);
    if (h <= size && w <= size) return {img};
    auto starts = [size](int64_t n) {
        std::vector<int64_t> v;
        if (n <= size) return std::vector<int64_t>{0};
        for (int64_t p = 0; p + size < n; p += size) v.push_back(p);
        v.push_back(n - size);
        return v;
    };
    const int64_t th = std::min(h, size), tw = std::min(w, size);
    std::vector<Tensor> out;
    for (int64_t y0 : starts(h))
        for (int64_t x0 : starts(w)) {
            Tensor t = Tensor::empty(Shape{c, th, tw});
            for (int64_t k = 0; k < c; ++k)
                for (int64_t y = 0; y < th; ++y)
                    std::copy_n(img.data() + (k * h + y0 + y) * w + x0, tw, t.data() + (k * th + y) * tw);
            out.push_back(t);
        }
    return out;
}

namespace {
// A mask file as [H, W] with 1 where any channel is non-zero (the masks' defect pixels).
Tensor load_mask(const std::string& path) {
    const Tensor m = io::load_image(path);
    const int64_t hw = m.dim(1) * m.dim(2);
    Tensor out = Tensor::empty(Shape{m.dim(1), m.dim(2)});
    for (int64_t i = 0; i < hw; ++i)
        out.data()[i] = (m.data()[i] > 0 || m.data()[hw + i] > 0 || m.data()[2 * hw + i] > 0) ? 1.0f : 0.0f;
    return out;
}

// The seeded crop of a crop_size sample: centred on a seeded defect pixel of its mask when it has
// one of the image's size, else at a seeded position.
std::pair<int64_t, int64_t> crop_origin(const Sample& s, int64_t h, int64_t w, const Tensor& mask) {
    const int64_t cs = s.crop_size;
    Rng rng(s.seed);
    int64_t y0 = rng.integer(0, h - cs), x0 = rng.integer(0, w - cs);
    if (mask.defined()) {
        std::vector<int64_t> on;
        if (mask.dim(0) == h && mask.dim(1) == w)
            for (int64_t i = 0; i < h * w; ++i)
                if (mask.data()[i] > 0.5f) on.push_back(i);
        if (!on.empty()) {
            const int64_t p = on[static_cast<size_t>(rng.integer(0, static_cast<int64_t>(on.size()) - 1))];
            y0 = std::clamp<int64_t>(p / w - cs / 2, 0, h - cs);
            x0 = std::clamp<int64_t>(p % w - cs / 2, 0, w - cs);
        }
    }
    return {y0, x0};
}
}  // namespace

Tensor materialize_mask(const Sample& s) {
    if (s.mask_path.empty()) return {};
    Tensor m = load_mask(s.mask_path);
    if (s.crop_size <= 0) return m;
    const Tensor img = s.path.empty() ? s.image : io::load_image(s.path);
    const int64_t h = img.dim(1), w = img.dim(2), cs = s.crop_size;
    if (m.dim(0) != h || m.dim(1) != w)
        throw IOError(s.mask_path + ": mask " + std::to_string(m.dim(1)) + "x" + std::to_string(m.dim(0)) +
                      " does not match its image " + std::to_string(w) + "x" + std::to_string(h));
    const auto [y0, x0] = crop_origin(s, h, w, m);
    Tensor out = Tensor::empty(Shape{cs, cs});
    for (int64_t y = 0; y < cs; ++y) std::copy_n(m.data() + (y0 + y) * w + x0, cs, out.data() + y * cs);
    return out;
}

Tensor materialize(const Sample& s) {
    Tensor img = s.path.empty() ? s.image : io::load_image(s.path);
    FSAD_CHECK(img.defined(), s.name, ": sample has neither a file nor an image");
    if (s.crop_size > 0) {
        const int64_t h = img.dim(1), w = img.dim(2), cs = s.crop_size;
        if (h < cs || w < cs)
            throw IOError(s.path + ": image " + std::to_string(w) + "x" + std::to_string(h) + " is smaller than the " +
                          std::to_string(cs) + "x" + std::to_string(cs) + " patch");
        const auto [y0, x0] = crop_origin(s, h, w, s.mask_path.empty() ? Tensor() : load_mask(s.mask_path));
        Tensor out = Tensor::empty(Shape{3, cs, cs});
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t y = 0; y < cs; ++y)
                std::copy_n(img.data() + (c * h + y0 + y) * w + x0, cs, out.data() + (c * cs + y) * cs);
        img = out;
    }
    if (!s.corruption.empty()) {
        Rng rng(s.seed);
        img = corrupt(img, s.corruption, rng);
    }
    return img;
}

std::vector<Tensor> materialize(const std::vector<Sample>& samples) {
    std::vector<Tensor> out(samples.size());
    std::exception_ptr err;
    std::mutex mu;
    std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < samples.size(); ++i) {
        if (failed.load(std::memory_order_relaxed)) continue;
        try {
            out[i] = materialize(samples[i]);
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu);
            if (!err) err = std::current_exception();
            failed = true;
        }
    }
    if (err) std::rethrow_exception(err);
    return out;
}

}  // namespace fsad::data
