#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli.hpp"

#ifndef FSAD_BUILD_TYPE
#define FSAD_BUILD_TYPE "unknown"
#endif
#ifndef FSAD_VERSION
#define FSAD_VERSION "0.0.0"
#endif

namespace fsad::cli {

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int sig) {
    g_stop.store(true);
    std::signal(sig, SIG_DFL);  // a second Ctrl-C ends the process at once
}
}  // namespace

void install_signal_handlers() {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
}

void check_interrupt() {
    if (g_stop.load()) throw Interrupted();
}

void apply_precision(const std::string& precision, bool tf32, Device dev) {
    if (tf32 && !precision.empty() && precision != "tf32")
        throw Error("--tf32 and --precision " + precision + " disagree (--tf32 is --precision tf32)");
    ops::Precision p = ops::Precision::FP32;
    if (tf32) {
        p = ops::Precision::TF32;
    } else if (!precision.empty()) {
        try {
            p = ops::parse_precision(precision);
        } catch (const Error& e) {
            throw Error(std::string("--precision: ") + e.what());
        }
    }
    if (p == ops::Precision::TF32 && !dev.is_cuda())
        throw Error(std::string(tf32 ? "--tf32" : "--precision tf32") +
                    " applies to --device cuda only (the CPU computes in exact FP32)");
    ops::set_precision(p);
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
    std::string o;
    for (size_t i = 0; i < v.size(); ++i) o += (i ? sep : "") + v[i];
    return o;
}

DetectorConfig DetectorArgs::tool_defaults() {
    DetectorConfig c;
    c.adapt = true;
    c.byol.steps = 0;  // the patch scorers gain nothing from fine-tuning
    return c;
}

DetectorConfig finish_config(const DetectorArgs& a, std::string* note) {
    DetectorConfig c = a.cfg;
    apply_precision(a.precision, a.tf32, c.device);
    if (c.byol.precision == ops::Precision::TF32 && !c.device.is_cuda())
        throw Error("--train-precision tf32 applies to --device cuda only (the CPU computes in exact FP32)");
    if (a.weights == "none") {
        c.weights.clear();
        if (note) *note = "random initialisation (--weights none): features are not ImageNet features";
    } else if (!a.weights.empty()) {
        c.weights = a.weights;
        if (note) *note = "weights " + a.weights;
    } else {
        c.weights = nn::find_weights(c.backbone);
        if (note) {
            if (!c.weights.empty()) {
                *note = "weights " + c.weights;
            } else {
                *note = "no ImageNet weights for " + nn::to_string(c.backbone) + " (looked in " +
                        join(nn::weight_search_paths(c.backbone), ", ") +
                        "): using a randomly initialised backbone. Few-shot AUROC is far lower without "
                        "pretraining (the paper's Table 5: 52.5 vs 67.3 on CIFAR10-C); README explains how to get weights.";
            }
        }
    }
    if (c.resize_short > 0) c.view = View::Squash;  // --resize-short: a square centre crop
    return c;
}

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && terminal()), start_(std::chrono::steady_clock::now()), last_() {}

Progress::~Progress() {
    if (drawn_) std::fputs("\n", stderr);
}

bool Progress::terminal() { return ::isatty(STDERR_FILENO) == 1; }

void Progress::update(int64_t done, int64_t total, const std::string& suffix) {
    check_interrupt();
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && done < total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double el = std::chrono::duration<double>(now - start_).count();
    const double rate = el > 0 ? static_cast<double>(done) / el : 0;
    const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
    const int width = 24;
    const int fill = total > 0 ? static_cast<int>(width * done / total) : 0;
    std::string bar(static_cast<size_t>(fill), '#');
    bar.resize(width, '.');
    char line[256];
    std::snprintf(line, sizeof line, "\r\033[K%s [%s] %lld/%lld %.1f/s ETA %d:%02d %s", label_.c_str(), bar.c_str(),
                  static_cast<long long>(done), static_cast<long long>(total), rate, static_cast<int>(eta) / 60,
                  static_cast<int>(eta) % 60, suffix.c_str());
    std::fputs(line, stderr);
    std::fflush(stderr);
    drawn_ = true;
}

void Progress::finish() {
    if (drawn_) std::fputs("\n", stderr);
    drawn_ = false;
}

std::string version_string() {
    std::string s = std::string("fsad ") + FSAD_VERSION + " (" + FSAD_BUILD_TYPE + ", ";
#if defined(__clang__)
    s += "clang " __clang_version__;
#elif defined(__GNUC__)
    s += "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__);
#endif
    return s + ", C++" + std::to_string(__cplusplus / 100 % 100) + ")";
}

std::vector<std::pair<std::string, std::string>> versions(const DetectorConfig& cfg) {
    std::vector<std::pair<std::string, std::string>> v{{"fsad", version_string()},
                                                       {"threads", std::to_string(get_num_threads())},
                                                       {"blas kernels", blas_info().core + " (" + blas_info().chosen_by + ")"},
                                                       {"cuda backend", cuda_built() ? "built" : "not built"},
                                                       {"cuda devices", std::to_string(cuda_device_count())},
                                                       {"precision", ops::precision_name(ops::precision())}};
    if (cfg.byol.precision) v.emplace_back("fine-tuning precision", ops::precision_name(*cfg.byol.precision));
    return v;
}

}  // namespace fsad::cli
