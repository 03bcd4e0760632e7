// libFuzzer target: any byte string must either parse or throw fsad::Error, never crash,
// read out of bounds or hit undefined behaviour (built with ASan + UBSan).
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstdlib>

#include "fsad/core/error.hpp"
#include "fsad/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        fsad::io::SafeTensors st = fsad::io::parse_safetensors(data, size, "fuzz-input");
        for (auto& [k, t] : st.tensors) (void)t.numel();
    } catch (const fsad::Error& e) {
        if (std::getenv("FSAD_FUZZ_VERBOSE")) std::fprintf(stderr, "fsad::Error: %s\n", e.what());  // triage
    }
    return 0;
}
