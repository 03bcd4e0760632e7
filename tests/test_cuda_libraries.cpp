// The GPU libraries opened on first use (src/cuda/libraries.hpp): the loader's errors name the
// library, every file tried and why; a missing function is named; the tables are complete. The
// FSAD_CUDA=EMULATED build fills the tables from the emulator (no file to open), so the loader
// itself is tried here on files every Linux machine has (the maths library) and on files none has.
// That a CUDA build links none of the libraries is ctest's `cuda_libraries_not_linked`.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <fsad/fsad.hpp>

#include "../src/cuda/libraries.hpp"

using namespace fsad;

TEST_CASE("GPU libraries: a library that cannot be loaded is named with every file tried and why") {
    const std::vector<std::string> files{"libfsad-no-such-library.so.7", "/nonexistent-folder/libfsad-other.so"};
    try {
        cuda::open_library("cuTEST (libfsad-no-such-library.so.7)", files);
        FAIL("a missing library was opened");
    } catch (const Error& e) {
        const std::string m = e.what();
        CAPTURE(m);
        CHECK(m.find("cannot load cuTEST (libfsad-no-such-library.so.7)") != std::string::npos);
        CHECK(m.find("\n  libfsad-no-such-library.so.7: ") != std::string::npos);
        CHECK(m.find("\n  /nonexistent-folder/libfsad-other.so: ") != std::string::npos);
        CHECK(m.find("No such file") != std::string::npos);  // dlerror's reason, per file
        CHECK(m.find("--device cpu") != std::string::npos);
    }
    CHECK_THROWS_AS(cuda::open_library("nothing", {}), Error);
}

TEST_CASE("GPU libraries: the first loadable file is used, and a missing function is named") {
    void* m = cuda::open_library("the maths library", {"libfsad-no-such-library.so.7", "libm.so.6"});
    REQUIRE(m != nullptr);
    auto cosine = reinterpret_cast<double (*)(double)>(cuda::library_symbol(m, "the maths library", "cos"));
    CHECK(cosine(0.0) == 1.0);
    CHECK(cosine(std::acos(-1.0)) == doctest::Approx(-1.0));
    CHECK_THROWS_WITH_AS(cuda::library_symbol(m, "the maths library", "fsad_no_such_function"),
                         doctest::Contains("the maths library has no function fsad_no_such_function"), Error);
}

TEST_CASE("GPU libraries: every function of each table is there, the same table on every call") {
    int missing = 0;
#define FSAD_COUNT_MISSING(f) missing += api.f == nullptr;
    {
        const cuda::CudnnApi& api = cuda::cudnn_api();
        FSAD_CUDNN_FUNCTIONS(FSAD_COUNT_MISSING)
        CHECK(&cuda::cudnn_api() == &api);
        CHECK(api.cudnnGetVersion() >= 1);
    }
    {
        const cuda::CublasApi& api = cuda::cublas_api();
        FSAD_CUBLAS_FUNCTIONS(FSAD_COUNT_MISSING)
    }
    {
        const cuda::CusolverApi& api = cuda::cusolver_api();
        FSAD_CUSOLVER_FUNCTIONS(FSAD_COUNT_MISSING)
    }
#undef FSAD_COUNT_MISSING
    CHECK(missing == 0);
}
