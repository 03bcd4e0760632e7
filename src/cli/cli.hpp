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

/// The detector options of the verbs that fit detectors (fit, eval, demo): the flags set the
/// configuration's fields themselves (app.cpp); beside it, what only the tool has.
struct DetectorArgs {
    DetectorConfig cfg = tool_defaults();
    std::string weights;    ///< empty = look up (nn::find_weights); "none" = random initialisation
    std::string precision;  ///< process-wide (apply_precision); empty = fp32 (or tf32 with --tf32)
    bool tf32 = false;
    /// DetectorConfig's defaults (the recipe measured best, docs/results.md), with fine-tuning on
    /// but 0 steps: `--steps N` alone fine-tunes, and by default nothing does.
    static DetectorConfig tool_defaults();
};

/// The configuration to fit with: the weights resolved (printing where they came from, or what a
/// random backbone costs, to `weights_note`), the precision applied, the flags' combinations
/// checked. Throws fsad::Error naming the flag.
DetectorConfig finish_config(const DetectorArgs& a, std::string* weights_note);

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
/// --precision fp32|tf32|bf16 and its shorthand --tf32: ops::set_precision for the run. TF32 is
/// refused off CUDA (bf16 runs on the CPU as the GPU's numbers, no faster), as are the two flags
/// disagreeing (fsad::Error naming the flag).
void apply_precision(const std::string& precision, bool tf32, Device dev);
std::string join(const std::vector<std::string>& v, const std::string& sep);

}  // namespace fsad::cli
