// libFuzzer target of the image decoder (io::decode_image over stb_image: PNG, JPEG, BMP, TGA,
// PGM/PPM; GIF, PSD, HDR and PIC refused): any byte string must decode to [3,H,W] in [0,1] or
// throw fsad::Error, never crash, read out of bounds, or allocate beyond the pixel limit (a
// header claiming 60000 x 60000 is refused before allocating). The limit here is 2^20 pixels
// rather than io::kMaxImagePixels so that each input decodes in milliseconds. stb_image itself is
// compiled into this target, instrumented (stb_image_impl.cpp), rather than taken from the
// system's uninstrumented libstb; run with UBSAN_OPTIONS=halt_on_error=1 so that its undefined
// behaviour (an index past an array inside a struct, which ASan cannot see) stops the run.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fsad/core/error.hpp"
#include "fsad/io/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        constexpr int64_t kMaxPixels = int64_t{1} << 20;
        const fsad::Tensor img =
            fsad::io::decode_image(std::string(reinterpret_cast<const char*>(data), size), "fuzz-input", kMaxPixels);
        if (img.ndim() != 3 || img.dim(0) != 3 || img.dim(1) * img.dim(2) > kMaxPixels) std::abort();
        for (int64_t i = 0; i < img.numel(); ++i)
            if (!(img.data()[i] >= 0.0f && img.data()[i] <= 1.0f)) std::abort();  // every pixel decoded, in range
    } catch (const fsad::Error& e) {
        if (std::getenv("FSAD_FUZZ_VERBOSE")) std::fprintf(stderr, "fsad::Error: %s\n", e.what());  // triage
    }
    return 0;
}
