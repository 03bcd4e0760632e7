#include "verbs.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "fsad/detail/py_random.hpp"

namespace fsad::cli {
namespace fs = std::filesystem;

namespace {

double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string fmt(double v, int prec = 2) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
}

std::string json_str(const std::string& s) {  // a JSON string literal
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += c;
        else if (static_cast<unsigned char>(c) < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else o += c;
    }
    return o + "\"";
}

// Progress of a fit: one bar per stage.
struct FitBar {
    bool enabled;
    std::string prefix;
    std::string stage;
    std::unique_ptr<Progress> bar;
    void operator()(const std::string& st, int64_t done, int64_t total, const std::string& suffix) {
        check_interrupt();
        if (st != stage) {
            if (bar) bar->finish();
            stage = st;
            bar = std::make_unique<Progress>(prefix + st, enabled);
        }
        bar->update(done, total, suffix);
    }
    void finish() {
        if (bar) bar->finish();
        bar.reset();
        stage.clear();
    }
};

void apply_threads(int t) {
    if (t > 0) set_num_threads(t);
}

// Published numbers (the paper's tables; ResNet18, ImageNet weights) for the report.
std::vector<eval::Reference> references(const std::string& dataset, const std::string& method) {
    std::vector<eval::Reference> r;
    auto add = [&](const std::string& cat, int k, double v, const std::string& src) { r.push_back({cat, k, v, src}); };
    if (method == "ours") {
        const std::string s = "paper (ResNet18, ImageNet), Ours w/o np";
        if (dataset == "magnetic-tile") add("magnetic-tile", 5, 58.23, s), add("magnetic-tile", 10, 61.93, s), add("magnetic-tile", 50, 63.55, s);
        if (dataset == "mvtec") add("mean", 2, 68.06, s), add("mean", 5, 78.11, s), add("mean", 10, 80.92, s);
        if (dataset == "aitex") add("aitex", 5, 73.44, s), add("aitex", 10, 77.45, s), add("aitex", 50, 78.14, s);
        if (dataset == "cifar10") add("mean", 10, 72.27, s);
    } else if (method == "ours-np") {
        const std::string s = "paper (ResNet18, ImageNet), Ours w/ np";
        if (dataset == "magnetic-tile") add("magnetic-tile", 5, 59.45, s);
        if (dataset == "mvtec") add("mean", 5, 78.76, s), add("mean", 10, 82.71, s);
        if (dataset == "cifar10") add("mean", 10, 74.56, s);
    } else if (method == "no-adapt" && dataset == "cifar10") {
        add("mean", 10, 67.32, "paper Table 5 (ResNet18), ImageNet without adaptation");
    } else if (method == "contrastive" && dataset == "cifar10") {
        add("mean", 10, 70.05, "paper Table 5 (ResNet18), + contrastive");
    }
    return r;
}

void print_summary(const eval::EvalResult& r, std::ostream& os) {
    std::string md = eval::report_markdown(r, {});
    // the table only: from the first '|' line to the last
    std::istringstream in(md);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty() && line[0] == '|') os << line << "\n";
}

// Runs the protocol with a progress bar and one line per finished run.
eval::EvalResult run_with_progress(const data::Dataset& ds, eval::ProtocolOptions po, bool quiet) {
    FitBar bar{!quiet, "", "", nullptr};
    po.on_run = [&](const eval::RunResult& x) {
        bar.finish();
        std::cout << "  " << x.category << " " << x.shots << "-shot seed " << x.seed << ": AUROC " << fmt(100 * x.auroc)
                  << (x.pixel_auroc >= 0 ? ", pixel " + fmt(100 * x.pixel_auroc) : std::string())
                  << (x.pro >= 0 ? ", PRO " + fmt(100 * x.pro) : std::string())
                  << ", flags " << fmt(100 * x.fpr, 1) << "% of normals and " << fmt(100 * x.tpr, 1) << "% of anomalies" << [&] {
                         if (x.selection.empty()) return std::string();
                         std::string t = "; chose " + x.scorer + " (synthetic";
                         for (const auto& c : x.selection) t += " " + c.scorer + " " + fmt(100 * c.synthetic_auroc);
                         return t + ")";
                     }()
                  << (x.flip_ratio > 0 ? "; flips " + x.flips + " (ratio " + fmt(x.flip_ratio, 3) + ")" : std::string())
                  << (x.second_view > 0 ? "; second view " + std::to_string(x.second_view) + " px" +
                                              (x.second_flip_ratio > 0 ? " (flips " + x.second_flips + ", ratio " +
                                                                             fmt(x.second_flip_ratio, 3) + ")"
                                                                       : std::string())
                                        : std::string())
                  << "  (fit " << fmt(x.fit_seconds, 1) << " s, score " << x.scores.size() << " images "
                  << fmt(x.score_seconds, 1) << " s)" << std::endl;
    };
    int64_t last_run = -1;
    auto t0 = std::chrono::steady_clock::now();
    eval::EvalResult res = eval::run_protocol(ds, po, [&](const eval::ProtocolProgress& p) {
        if (p.run != last_run) {
            bar.finish();
            last_run = p.run;
        }
        bar.prefix = "[" + std::to_string(p.run + 1) + "/" + std::to_string(p.runs) + "] " + p.category + " " +
                     std::to_string(p.shots) + "-shot seed " + std::to_string(p.seed) + ": ";
        bar(p.stage, p.done, p.total, "");
    });
    bar.finish();
    std::cout << "total " << fmt(since(t0), 1) << " s\n";
    return res;
}

}  // namespace

// ------------------------------------------------------------------------------------------ fit
int run_fit(const FitArgs& a, bool quiet) {
    apply_threads(a.det.cfg.threads);
    std::string wnote;
    DetectorConfig cfg = finish_config(a.det, &wnote);
    std::cout << "backbone " << nn::to_string(cfg.backbone) << ": " << wnote << "\n";
    std::vector<std::string> files = data::list_images(a.normal);
    if (files.empty()) throw IOError(a.normal + ": no image files (png, jpg, bmp, ...) in the normal folder");
    if (a.shots > 0) {
        if (a.shots > static_cast<int64_t>(files.size()))
            throw Error("--shots " + std::to_string(a.shots) + ": " + a.normal + " holds only " + std::to_string(files.size()) + " images");
        std::vector<std::string> pick;
        for (int64_t i : eval::PyRandom(cfg.seed).sample(static_cast<int64_t>(files.size()), a.shots))
            pick.push_back(files[static_cast<size_t>(i)]);
        files = pick;
    }
    // check the output location before spending minutes on fitting
    const fs::path out = fs::path(a.output);
    std::error_code ec;
    if (out.has_parent_path() && !fs::is_directory(out.parent_path(), ec))
        throw IOError(a.output + ": the folder " + out.parent_path().string() + " does not exist");
    if (fs::is_directory(out, ec)) throw IOError(a.output + ": is a folder; give a model file name");
    std::vector<data::Sample> samples;
    for (const auto& f : files) samples.push_back(data::file_sample(f));
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<Tensor> imgs = data::materialize(samples);
    Detector det(cfg);
    FitBar bar{!quiet, "", "", nullptr};
    try {
        det.fit(imgs, [&](const FitProgress& p) {
            bar(p.stage, p.done, p.total, p.stage == "fine-tune" ? "loss " + fmt(p.loss, 4) : "");
        });
    } catch (const Error& e) {  // "Detector::fit: image N: ..." names the file instead
        const std::string m = e.what(), key = "Detector::fit: image ";
        if (m.rfind(key, 0) == 0 && m.size() > key.size() && std::isdigit(static_cast<unsigned char>(m[key.size()]))) {
            size_t used = 0;
            const size_t i = std::stoul(m.substr(key.size()), &used);
            if (i < files.size() && m.compare(key.size() + used, 2, ": ") == 0)
                throw Error(files[i] + ": " + m.substr(key.size() + used + 2));
        }
        throw;
    }
    bar.finish();
    check_interrupt();
    det.save(a.output);
    const DetectorConfig& fc = det.config();
    if (fc.view == View::Shots) std::cout << "view " << fc.view_w << " x " << fc.view_h << " px (width x height)\n";
    if (fc.view == View::Shots || fc.view == View::Keep) {  // no silent squeeze of long images
        double longest = 1;
        for (const Tensor& t : imgs)
            longest = std::max(longest, static_cast<double>(std::max(t.dim(1), t.dim(2))) / static_cast<double>(std::min(t.dim(1), t.dim(2))));
        const double view_aspect = fc.view == View::Keep ? fc.max_aspect
                                                         : static_cast<double>(std::max(fc.view_h, fc.view_w)) /
                                                               static_cast<double>(std::min(fc.view_h, fc.view_w));
        if (longest > fc.max_aspect && view_aspect + 0.1 >= fc.max_aspect)  // (shots: the median shot is capped)
            std::cout << "note: shots up to " << fmt(longest, 1) << ":1 are squeezed to " << fmt(fc.max_aspect, 1)
                      << ":1 along their length (--max-aspect raises it; large views run in tiles, --tiles)\n";
    }
    std::cout << "fitted on " << files.size() << " image(s) from " << a.normal << " in " << fmt(since(t0), 1) << " s ("
              << (cfg.adapt && cfg.byol.steps > 0 ? std::to_string(cfg.byol.steps) + " fine-tuning steps" : "no fine-tuning")
              << "); threshold " << fmt(det.threshold(), 4) << "\nscorer " << to_string(det.config().scorer);
    if (!det.selection().empty()) {  // --scorer auto: the table it chose from
        std::cout << " (auto; synthetic AUROC";
        for (const auto& c : det.selection()) std::cout << " " << c.scorer << " " << fmt(100 * c.synthetic_auroc);
        std::cout << ")";
    }
    std::cout << (fc.flips != Flips::Auto && det.flip_ratio() > 0 ? "; flips " + to_string(fc.flips) : std::string());
    if (const Detector* s = det.second_view())  // PatchConfig::second_view
        std::cout << "\nsecond view " << s->config().view_w << " x " << s->config().view_h << " px"
                  << (s->flip_ratio() > 0 ? "; flips " + to_string(s->config().flips) : std::string())
                  << "; the two views' scores, each over its own threshold, summed";
    std::cout << "\nwrote " << a.output << "\n";
    return 0;
}

// ---------------------------------------------------------------------------------------- score
int run_score(const ScoreArgs& a, bool quiet) {
    apply_threads(a.threads);
    const Device dev = a.device;
    apply_precision(a.precision, a.tf32, dev);
    Detector det = Detector::load(a.model, dev);
    if (a.threshold >= 0) det.set_threshold(a.threshold);
    std::vector<std::string> files;
    for (const auto& in : a.inputs) {
        std::error_code ec;
        if (fs::is_directory(in, ec)) {
            auto f = data::list_images(in, true);
            if (f.empty()) throw IOError(in + ": no image files in this folder");
            files.insert(files.end(), f.begin(), f.end());
        } else if (fs::exists(in, ec)) {
            files.push_back(in);
        } else {
            throw IOError(in + ": no such file or folder");
        }
    }
    std::vector<data::Sample> samples;
    for (const auto& f : files) samples.push_back(data::file_sample(f, 0, ""));
    if (!a.maps.empty()) {
        if (det.config().scorer == Scorer::Global)
            throw Error("--maps: " + a.model + " uses the global scorer, which gives no anomaly map; fit with --scorer "
                        "patch-gauss, patch-knn or patch-sum");
        std::error_code mec;
        fs::create_directories(a.maps, mec);
        if (!fs::is_directory(a.maps, mec)) throw IOError(a.maps + ": cannot create the maps folder");
    }
    Progress bar("scoring", !quiet);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> s;
    if (a.maps.empty()) {
        s = eval::score_samples(det, samples, 32, [&](int64_t d, int64_t t) { bar.update(d, t); });
    } else {  // scores and maps from one pass; an overlay PNG per image, named after it
        std::set<std::string> taken;
        for (size_t i = 0; i < samples.size(); i += 16) {
            std::vector<data::Sample> part(samples.begin() + static_cast<std::ptrdiff_t>(i),
                                           samples.begin() + static_cast<std::ptrdiff_t>(std::min(samples.size(), i + 16)));
            const std::vector<Tensor> imgs = data::materialize(part);
            for (size_t j = 0; j < imgs.size(); ++j) {
                try {
                    det.check_image(imgs[j]);
                } catch (const Error& e) {
                    throw Error(part[j].path + ": " + e.what());
                }
            }
            const std::vector<Tensor> maps = det.score_map(imgs);
            for (size_t j = 0; j < imgs.size(); ++j) {
                s.push_back(*std::max_element(maps[j].data(), maps[j].data() + maps[j].numel()));
                std::string name = fs::path(part[j].path).stem().string() + "_map";
                for (int k = 2; taken.count(name); ++k) name = fs::path(part[j].path).stem().string() + "_map-" + std::to_string(k);
                taken.insert(name);
                const float thr = static_cast<float>(det.threshold());
                io::write_png((fs::path(a.maps) / (name + ".png")).string(), io::heatmap_overlay(imgs[j], maps[j], 0.5f * thr, 1.5f * thr));
            }
            bar.update(static_cast<int64_t>(s.size()), static_cast<int64_t>(samples.size()));
        }
    }
    bar.finish();
    const double secs = since(t0);
    int64_t anomalous = 0;
    for (float v : s) anomalous += v > det.threshold();
    if (!a.csv.empty()) {
        std::ostringstream c;
        c << "path,score,threshold,anomalous\n";
        for (size_t i = 0; i < files.size(); ++i) {
            std::string p = files[i];
            if (p.find_first_of(",\"\n") != std::string::npos) {
                std::string q = "\"";
                for (char ch : p) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
                p = q + "\"";
            }
            c << p << "," << s[i] << "," << det.threshold() << "," << (s[i] > det.threshold() ? 1 : 0) << "\n";
        }
        io::write_file_atomic(a.csv, c.str());
    }
    if (a.json) {
        std::cout << "{\"model\": " << json_str(a.model) << ", \"threshold\": " << det.threshold() << ", \"images\": [\n";
        for (size_t i = 0; i < files.size(); ++i)
            std::cout << "  {\"path\": " << json_str(files[i]) << ", \"score\": " << s[i]
                      << ", \"anomalous\": " << (s[i] > det.threshold() ? "true" : "false") << "}" << (i + 1 < files.size() ? "," : "")
                      << "\n";
        std::cout << "]}\n";
    } else {
        for (size_t i = 0; i < files.size(); ++i)
            std::printf("%10.4f  %-9s  %s\n", static_cast<double>(s[i]), s[i] > det.threshold() ? "ANOMALOUS" : "ok", files[i].c_str());
        std::printf("%zu image(s), %lld anomalous (threshold %.4f), %.1f images/s\n", files.size(),
                    static_cast<long long>(anomalous), det.threshold(), static_cast<double>(files.size()) / std::max(secs, 1e-9));
    }
    if (!a.csv.empty() && !a.json) std::cout << "wrote " << a.csv << "\n";
    return a.fail_on_anomaly && anomalous > 0 ? 2 : 0;
}

// ----------------------------------------------------------------------------------------- eval
int run_eval(const EvalArgs& a, bool quiet, const std::string& command, const std::string& config_text, CLI::App* app) {
    apply_threads(a.det.cfg.threads);
    DetectorArgs d = a.det;
    DetectorConfig& f = d.cfg;
    const bool cifar = a.dataset == "cifar10" || a.dataset == "cifar100";
    // the paper's CIFAR setting unless the flags say otherwise: 32 -> 64 px, affine augmentation only
    if (cifar && app->count("--res") == 0) f.resolution = 64;
    if (cifar && app->count("--no-colour") == 0) f.byol.augment.colour = false;
    if (a.method == "ours-np" && app->count("--negatives") == 0)
        f.byol.negative = cifar ? method::Negative::CifarBlurShift : method::Negative::CutPaste;
    if (a.method == "no-adapt") f.adapt = false;
    else if (app->count("--steps") == 0) f.byol.steps = 200;  // a fine-tuning method: the paper's step count
    std::string wnote;
    DetectorConfig cfg = finish_config(d, &wnote);
    if (a.method == "contrastive") cfg.byol.pair = method::PairLoss::None;
    if (a.method == "fixed-centre") cfg.byol.pair = method::PairLoss::FixedCentre;
    if (a.method == "ours-np" && cfg.byol.negative == method::Negative::None)
        throw Error("--method ours-np needs negatives; --negatives none contradicts it");
    std::cout << "backbone " << nn::to_string(cfg.backbone) << ": " << wnote << "\n";

    // check the report location before the long run
    const fs::path rep = fs::path(a.report);
    std::error_code ec;
    if (fs::exists(rep, ec) && !fs::is_directory(rep, ec)) throw IOError(a.report + ": exists and is not a folder");

    data::LoadOptions lo;
    lo.categories = a.categories;
    lo.corruptions = a.corruptions;
    lo.test_limit = a.test_limit;
    data::Dataset ds = data::load_dataset(a.dataset, a.root, lo);
    size_t ntest = 0;
    for (const auto& c : ds.categories) ntest += c.test.size();
    std::cout << "dataset " << a.dataset << " at " << a.root << ": " << ds.categories.size() << " categories, " << ntest
              << " test images (+ undrawn normals where the protocol tests them)\n";

    eval::ProtocolOptions po;
    po.detector = cfg;
    po.shots = a.shots;
    po.seeds = a.seeds;
    po.first_seed = static_cast<int>(cfg.seed);
    po.test_normals = a.test_normals;
    po.test_anomalies = a.test_anomalies;
    eval::EvalResult res = run_with_progress(ds, po, quiet);

    eval::ReportInfo info;
    info.title = "fsad eval: " + a.dataset + ", method " + a.method;
    info.command = command;
    info.config_json = "{\"method\": " + json_str(a.method) + ", \"detector\": " + to_json(cfg) + "}";
    info.config_text = config_text;
    info.versions = versions(cfg);
    info.references = references(a.dataset, a.method);
    info.notes.push_back("Backbone " + nn::to_string(cfg.backbone) + ": " + wnote);
    if (!info.references.empty() && cfg.backbone != nn::BackboneKind::ResNet18)
        info.notes.push_back("The paper's numbers are for ResNet18; this run used " + nn::to_string(cfg.backbone) + ".");
    if (cifar) {
        info.notes.push_back("CIFAR-10 here are JPEG re-encodings of the originals, so the jpeg corruption differs less "
                             "from the clean images than in the original CIFAR10-C.");
        if (a.test_limit > 0)
            info.notes.push_back("Test set limited to the first " + std::to_string(a.test_limit) +
                                 " clean test images per class (and their corruptions).");
    }
    if (a.test_normals > 0 || a.test_anomalies > 0)
        info.notes.push_back("Imbalanced protocol (the paper's Table 8): each run tests on " +
                             (a.test_normals > 0 ? std::to_string(a.test_normals) : std::string("all")) + " normal and " +
                             (a.test_anomalies > 0 ? std::to_string(a.test_anomalies) : std::string("all")) +
                             " anomalous images drawn with the run's seed.");
    if (a.dataset == "aitex")
        info.notes.push_back("AITEX: seeded random 256x256 patches; defect patches are centred on the defect mask when "
                             "Mask_images has one. Without Mask_images the test is image-level: every fifth normal "
                             "image and every defect image scored as the maximum over its 256x256 tiles.");
    eval::write_report(a.report, res, info);
    print_summary(res, std::cout);
    std::cout << "report: " << (fs::absolute(rep) / "report.html").string() << "\n";
    return 0;
}

// ----------------------------------------------------------------------------------------- demo
DetectorArgs DemoArgs::demo_defaults() {
    DetectorArgs d;  // fsad's defaults (no fine-tuning, auto patch scorer) at 128 px
    d.cfg.resolution = 128;
    return d;
}

int run_demo(const DemoArgs& a, bool quiet, const std::string& command, const std::string& config_text) {
    apply_threads(a.det.cfg.threads);
    const auto t0 = std::chrono::steady_clock::now();
    std::string wnote;
    DetectorConfig cfg = finish_config(a.det, &wnote);
    std::cout << "fsad demo: generated industrial textures (metal, fabric, wood, stone) with scratches, holes, stains and cracks\n"
              << "backbone " << nn::to_string(cfg.backbone) << ": " << wnote << "\n";
    data::SyntheticOptions so;
    so.products = a.products;
    so.size = cfg.resolution > 0 ? cfg.resolution : 128;  // --res auto: the demo's own size
    so.seed = cfg.seed;
    data::Dataset ds = data::synthetic_dataset(so);
    eval::ProtocolOptions po;
    po.detector = cfg;
    po.shots = a.shots;
    po.seeds = a.seeds;
    po.first_seed = static_cast<int>(cfg.seed);
    eval::EvalResult res = run_with_progress(ds, po, quiet);
    eval::ReportInfo info;
    info.title = "fsad demo: few-shot anomaly detection on generated textures";
    info.command = command;
    info.config_json = "{\"demo\": true, \"detector\": " + to_json(cfg) + "}";
    info.config_text = config_text;
    info.versions = versions(cfg);
    info.notes.push_back("Backbone " + nn::to_string(cfg.backbone) + ": " + wnote);
    info.notes.push_back("Each product: " + std::to_string(so.pool) + " normal parts to draw the shots from, " +
                         std::to_string(so.test_normal) + " normal and " + std::to_string(so.test_per_defect * 4) +
                         " defective test parts (scratch, hole, stain, crack).");
    eval::write_report(a.out, res, info);
    print_summary(res, std::cout);
    std::cout << "finished in " << fmt(since(t0), 1) << " s\nreport: " << (fs::absolute(a.out) / "report.html").string() << "\n";
    return 0;
}

// ----------------------------------------------------------------------------------------- info
int run_info(const InfoArgs& a) {
    apply_threads(a.threads);
    std::cout << version_string() << "\n";
    std::string cpu = "unknown";
    std::ifstream ci("/proc/cpuinfo");
    for (std::string line; std::getline(ci, line);)
        if (line.rfind("model name", 0) == 0) {
            cpu = line.substr(line.find(':') + 2);
            break;
        }
    std::cout << "cpu: " << cpu << ", " << std::thread::hardware_concurrency() << " hardware threads; fsad uses "
              << get_num_threads() << " thread(s) (--threads, OMP_NUM_THREADS)\n";
    std::cout << "cpu kernels: "
              << (ops::conv_packing_available() ? "AVX-512 (fsad's packed GEMM for deep convolutions)"
                                                : "portable (OpenBLAS for every convolution product)")
              << "\n";
    const BlasInfo blas = blas_info();
    std::cout << "blas: " << blas.library << "; " << blas.core << " kernels (chosen by " << blas.chosen_by
              << "; processor: " << blas.processor << ")\n";
    std::cout << "devices: cpu";
    for (int i = 0; i < cuda_device_count(); ++i) std::cout << ", cuda:" << i << " " << cuda_device_name(i);
    std::cout << "\ncuda backend: "
              << (cuda_built() ? "built (" + std::to_string(cuda_device_count()) + " GPU(s) visible; " + cuda_versions() + ")"
                               : "not built")
              << "\n";
    std::cout << "weights (first existing file is used; --weights overrides):\n";
    for (auto k : {nn::BackboneKind::ResNet18, nn::BackboneKind::ResNet34, nn::BackboneKind::ResNet50,
                   nn::BackboneKind::ResNet101, nn::BackboneKind::MobileNetV2}) {
        const std::string found = nn::find_weights(k);
        std::cout << "  " << nn::to_string(k) << ": " << (found.empty() ? "not found (" + join(nn::weight_search_paths(k), ", ") + ")" : found)
                  << "\n";
    }
    return 0;
}

// ---------------------------------------------------------------------------------------- bench
int run_bench(const BenchArgs& a) {
    apply_threads(a.threads);
    const Device dev = a.device;
    apply_precision(a.precision, false, dev);
    nn::BackboneConfig bc{a.backbone};
    auto net = nn::make_backbone(bc, 1);
    net->to(dev);
    net->eval();
    Rng rng(2);
    const Tensor x = rng.uniform_tensor(Shape{a.batch, 3, a.res, a.res}, -1.0f, 1.0f).to(dev);
    auto timed = [&](const std::function<void()>& fn, int reps) {
        fn();  // warm-up: allocator, algorithm choice
        synchronize(dev);
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) {
            fn();
            synchronize(dev);
            check_interrupt();
        }
        return since(t0) / reps;
    };
    const double infer = timed([&] {
        NoGradGuard ng;
        net->forward(Var(x)).value();
    }, 3);
    method::ByolOptions o;
    o.batch = a.batch;
    o.device = dev;
    o.negative = method::Negative::CutPaste;
    method::ByolTrainer tr(nn::make_backbone(bc, 3), [&] { return nn::make_backbone(bc, 4); }, o);
    std::vector<int64_t> perm(static_cast<size_t>(a.batch));
    for (int64_t i = 0; i < a.batch; ++i) perm[static_cast<size_t>(i)] = (i + 1) % a.batch;
    const double step = timed([&] { tr.train_step(x, x, &x, perm); }, static_cast<int>(a.steps));
    std::cout << version_string() << " on " << (dev.is_cuda() ? cuda_device_name(dev.index) : "cpu, " + std::to_string(get_num_threads()) + " thread(s)")
              << ", " << ops::precision_name(ops::precision()) << "\n" << nn::to_string(a.backbone) << " features at " << a.res << " px, batch " << a.batch << ": " << fmt(static_cast<double>(a.batch) / infer, 1)
              << " images/s\nfine-tuning step (BYOL + L_pp + L_np, Adam, EMA) at " << a.res << " px, batch " << a.batch << ": "
              << fmt(step, 3) << " s/step (" << fmt(1.0 / step, 2) << " steps/s)\n";
    if (a.profile) {  // one more of each, op by op (on a GPU: device time between events)
        {
            ops::Profiler prof;
            {
                NoGradGuard ng;
                net->forward(Var(x));
            }
            std::cout << "\nops of one forward pass (features):\n" << prof.table();
        }
        ops::Profiler prof;
        tr.train_step(x, x, &x, perm);
        std::cout << "\nops of one fine-tuning step:\n" << prof.table();
    }
    return 0;
}

// ---------------------------------------------------------------------------------------- synth
int run_synth(const SynthArgs& a) {
    data::SyntheticOptions so;
    so.products = a.products;
    so.size = a.size;
    so.pool = a.pool;
    so.test_normal = a.test;
    so.test_per_defect = a.test;
    so.seed = static_cast<uint64_t>(a.seed);
    std::error_code ec;
    if (fs::exists(a.out, ec)) throw IOError(a.out + ": already exists; synth writes a new folder");
    const fs::path tmp = fs::path(a.out).string() + ".tmp";
    fs::remove_all(tmp, ec);
    try {
        data::write_dataset(data::synthetic_dataset(so), tmp.string(), a.layout);
        fs::rename(tmp, a.out);
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    std::cout << "wrote a " << a.layout << "-layout dataset to " << a.out << "\n";
    return 0;
}

}  // namespace fsad::cli
