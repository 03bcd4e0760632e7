// libFuzzer target of the model-file reader (Detector::load: safetensors, its metadata, the JSON
// configuration, the backbone's and the scorer's tensors), then one scoring of a small image
// with what was loaded: any byte string must load and score, or throw fsad::Error naming the
// file, never crash, read out of bounds or allocate without bound. Built with
// FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, so the reader skips its checksum test and mutated
// files reach the parsing behind it. Seeds: seeds/model/ (make_model_seeds.cpp).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "fsad/core/error.hpp"
#include "fsad/method/detector.hpp"

namespace {
std::string temp_path() {
    const std::filesystem::path dir = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    return (dir / ("fsad-fuzz-model-" + std::to_string(getpid()) + ".fsad")).string();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = temp_path();
    static const bool removed_at_exit = (std::atexit([] { std::remove(path.c_str()); }), true);
    (void)removed_at_exit;
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const fsad::Detector d = fsad::Detector::load(path);
        const fsad::Tensor img = fsad::Tensor::full(fsad::Shape{3, 24, 40}, 0.5f);
        (void)d.score(img);
    } catch (const fsad::Error& e) {
        if (std::getenv("FSAD_FUZZ_VERBOSE")) std::fprintf(stderr, "fsad::Error: %s\n", e.what());  // triage
    }
    return 0;
}
