// Runner of the CPU-vs-CUDA parity tests: skipped with a message, exit code 77 (ctest's
// SKIP_RETURN_CODE), when no GPU is visible, as on CI and on most build machines.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <fsad/core/device.hpp>

int main(int argc, char** argv) {
    if (!fsad::cuda_available()) {
        std::printf("SKIPPED: no CUDA device visible; the CPU-vs-CUDA parity tests need a GPU\n");
        return 77;
    }
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
