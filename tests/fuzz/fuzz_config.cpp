// libFuzzer target of the fsad tool's TOML configuration (--config): the bytes are the config
// file, parsed through the tool's own command line (src/cli/app.cpp) exactly as
// `fsad --config FILE` (or `fsad --config FILE <verb>`) parses it. The first byte modulo 8 picks
// the verb (none, fit, score, eval, demo, bench, info, synth): the seeds start with a blank that
// picks theirs (a tab: fit, a newline: score, '[': eval, a form feed: demo, a return: bench). Every
// input must parse or end in CLI::ParseError (what main reports as a usage error), never crash
// or throw anything else: main lets no other exception out of parsing.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "app.hpp"

namespace {
std::string temp_path() {
    const std::filesystem::path dir = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    return (dir / ("fsad-fuzz-config-" + std::to_string(getpid()) + ".toml")).string();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = temp_path();
    static const bool removed_at_exit = (std::atexit([] { std::remove(path.c_str()); }), true);
    (void)removed_at_exit;
    static const char* const verbs[] = {nullptr, "fit", "score", "eval", "demo", "bench", "info", "synth"};
    const char* verb = size > 0 ? verbs[data[0] % 8] : nullptr;
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    std::vector<std::string> args{"fsad", "--config", path};
    if (verb) args.emplace_back(verb);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    fsad::cli::Cli cli;
    try {
        cli.app.parse(static_cast<int>(argv.size()), argv.data());
        // what eval and demo write into their reports
        (void)cli.c_eval->config_to_str(true, false);
        (void)cli.c_demo->config_to_str(true, false);
    } catch (const CLI::ParseError& e) {
        if (std::getenv("FSAD_FUZZ_VERBOSE")) std::fprintf(stderr, "CLI::ParseError: %s\n", e.what());  // triage
    }
    return 0;
}
