// BLAS kernel selection and thread control of the CPU backend (include/fsad/core/parallel.hpp).
#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>
#include <strings.h>

#include <cstdlib>
#include <string>

#include "fsad/core/error.hpp"
#include "fsad/core/parallel.hpp"

namespace fsad {

// fsad threads its own kernels and calls OpenBLAS single-threaded (src/cpu/gemm.hpp says why).
// OpenBLAS's kernel set is re-selected here when it fell back below the processor (parallel.hpp
// says when and why).
extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
}

namespace {

enum IsaLevel { kSse = 0, kAvx = 1, kAvx2 = 2, kAvx512 = 3, kAvx512Bf16 = 4 };

IsaLevel processor_level() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512cd");
    if (avx512 && __builtin_cpu_supports("avx512bf16")) return kAvx512Bf16;
    if (avx512) return kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kAvx2;
    if (__builtin_cpu_supports("avx")) return kAvx;
#endif
    return kSse;
}

const char* level_name(IsaLevel l) {
    switch (l) {
        case kAvx512Bf16: return "AVX-512 BF16";
        case kAvx512: return "AVX-512";
        case kAvx2: return "AVX2";
        case kAvx: return "AVX";
        default: return "SSE";
    }
}

// OpenBLAS's x86-64 kernel sets without AVX2/FMA kernels (the Prescott fallback among them).
// Names it reports that are not here (newer sets, other architectures) are never replaced.
bool core_below_avx2(const std::string& core) {
    static const char* const kOld[] = {"katmai",   "coppermine", "northwood",   "prescott",  "banias",
                                       "atom",     "core2",      "penryn",      "dunnington", "nehalem",
                                       "athlon",   "opteron",    "opteron_sse3", "barcelona", "nano",
                                       "sandybridge", "bobcat",  "bulldozer",   "piledriver", "steamroller"};
    for (const char* n : kOld)
        if (strcasecmp(core.c_str(), n) == 0) return true;
    return false;
}

std::string string_or_empty(const char* s) { return s ? std::string(s) : std::string(); }

BlasInfo select_blas_kernels() {
    BlasInfo info;
    info.library = string_or_empty(openblas_get_config());
    info.core = string_or_empty(openblas_get_corename());
    const IsaLevel cpu = processor_level();
    info.processor = level_name(cpu);
    info.chosen_by = "OpenBLAS";
    if (std::getenv("OPENBLAS_CORETYPE")) {
        info.chosen_by = "OPENBLAS_CORETYPE";
        return info;
    }
    if (cpu < kAvx2 || !core_below_avx2(info.core)) return info;
    // OpenBLAS re-runs its selection (reading OPENBLAS_CORETYPE) once its table pointer is reset;
    // both calls are exported by DYNAMIC_ARCH builds only.
    using Fn = void (*)();
    auto init = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
    auto quit = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
    if (!init || !quit || info.library.find("DYNAMIC_ARCH") == std::string::npos) {
        info.chosen_by = "OpenBLAS (its " + info.core + " kernels lack the processor's " + info.processor +
                         "; this OpenBLAS build cannot switch: install one built for this processor)";
        return info;
    }
    const char* want = cpu == kAvx512Bf16 ? "Cooperlake" : cpu == kAvx512 ? "SkylakeX" : "Haswell";
    const std::string fell_back = info.core;
    setenv("OPENBLAS_CORETYPE", want, 1);
    quit();
    init();
    unsetenv("OPENBLAS_CORETYPE");
    info.core = string_or_empty(openblas_get_corename());
    info.chosen_by = "fsad (OpenBLAS chose " + fell_back + ")";
    return info;
}

// Made once, while the library initialises (and on first use, should another library's static
// initialiser get here first).
const BlasInfo& blas_state() {
    static const BlasInfo b = [] {
        openblas_set_num_threads(1);
        return select_blas_kernels();
    }();
    return b;
}
const bool g_blas_ready = (blas_state(), true);

}  // namespace

BlasInfo blas_info() { return blas_state(); }

void set_num_threads(int n) {
    if (n < 1) throw Error("set_num_threads: need at least 1 thread, got " + std::to_string(n));
    omp_set_num_threads(n);
    openblas_set_num_threads(1);
    (void)g_blas_ready;
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace fsad
