// Pieces the `fsad` tool's verbs share: the detector options every fitting verb takes, the
// progress bar, Ctrl-C handling and the weights look-up.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <fsad/fsad.hpp>

namespace fsad::cli {

/// Thrown from progress callbacks after Ctrl-C / SIGTERM: unwinds, so atomic writers never rename
/// their temporary files into place.
struct Interrupted : Error {
    Interrupted() : Error("interrupted") {}
};
void install_signal_handlers();
void check_interrupt();  ///< throws Interrupted after a signal

/// Options of the verbs that fit detectors (fit, eval, demo), as the flags set them.
struct DetectorFlags {
    std::string backbone = "mobilenetv2";
    std::string weights;  ///< empty = look up (nn::find_weights); "none" = random initialisation
    float width = 1.0f;
    std::string negatives = "none";
    // the defaults are the recipe measured best across the datasets (docs/results.md): ImageNet
    // MobileNetV2, no fine-tuning (steps 0), the shots' own views (N_A 0), the auto-chosen patch scorer
    int64_t steps = 0, batch = 64, res = 224, resize_short = 0, n_augment = 0, freeze_stages = 0;
    float lr = 3e-4f;
    bool no_adapt = false, freeze_bn = false, no_colour = false, tf32 = false;
    double quantile = 0.99;
    std::string scorer = "auto", view = "shots";
    double coreset = 0.1;
    bool auto_global = false;
    std::string flips = "auto";
    std::vector<int64_t> patch_stages;
    std::string device = "cpu", precision;  ///< precision: empty = fp32 (or tf32 with --tf32)
    std::string train_precision;            ///< the fine-tuning steps' (ByolOptions::precision); empty = precision's
    int threads = 0;
    int64_t seed = 0;
};

/// Builds the configuration; resolves the weights (printing where they came from, or what a
/// random backbone costs, to `log`) and checks the device. Throws fsad::Error with the flag's name.
DetectorConfig make_config(const DetectorFlags& f, std::string* weights_note);

/// A one-line progress bar on stderr with rate and ETA, drawn only when stderr is a terminal.
class Progress {
public:
    explicit Progress(std::string label, bool enabled);
    ~Progress();
    void update(int64_t done, int64_t total, const std::string& suffix = "");
    void finish();  ///< ends the line (terminal only)
    static bool terminal();  ///< stderr is a terminal

private:
    std::string label_;
    bool enabled_;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point start_, last_;
};

std::string version_string();              ///< fsad version, compiler, build type
/// for reports: build, threads, devices, the precision and the fine-tuning's when cfg sets one
std::vector<std::pair<std::string, std::string>> versions(const DetectorConfig& cfg);
std::string cuda_unsupported_reason();  ///< why --device cuda is refused
/// --precision fp32|tf32|bf16 and its shorthand --tf32: ops::set_precision for the run. TF32 is
/// refused off CUDA (bf16 runs on the CPU as the GPU's numbers, no faster), as are the two flags
/// disagreeing (fsad::Error naming the flag).
void apply_precision(const std::string& precision, bool tf32, Device dev);
std::string join(const std::vector<std::string>& v, const std::string& sep);

}  // namespace fsad::cli
