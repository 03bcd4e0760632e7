// Runner for tests that need ../shared (real data and weights): skipped with a message, exit
// code 77 (ctest's SKIP_RETURN_CODE), when the folder is absent, as on a user's fresh clone.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>

int main(int argc, char** argv) {
    if (!std::filesystem::exists(FSAD_SHARED_DIR "/weights")) {
        std::printf("SKIPPED: %s not found; the shared data/weights tests need it\n", FSAD_SHARED_DIR "/weights");
        return 77;
    }
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
