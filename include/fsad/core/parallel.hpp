// The CPU runtime's knobs: the thread count for fsad's CPU kernels and for OpenBLAS, and which
// of OpenBLAS's kernel sets this process runs.
#pragma once
#include <string>

namespace fsad {

/// Sets the number of threads used by CPU kernels and BLAS (n >= 1).
void set_num_threads(int n);
int get_num_threads();

/// The BLAS library's kernels in this process.
///
/// OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels from the processor's model
/// number when it loads. A processor newer than the OpenBLAS release (Debian 12's 0.3.21 does not
/// know Sapphire/Emerald Rapids, for one) gets its generic "Prescott" kernels: SSE3, no FMA,
/// measured 2.2x slower on a ResNet18 training step. When fsad's library initialises (before
/// main, for a program linked with it) and OpenBLAS runs kernels without AVX2 on a processor that
/// has AVX2 and FMA, fsad re-selects them by the processor's instruction sets: "Cooperlake" with
/// AVX-512 BF16, "SkylakeX" with AVX-512, "Haswell" with AVX2 (what newer OpenBLAS releases do
/// for processors they do not know). A user's OPENBLAS_CORETYPE is left alone: setting it keeps
/// OpenBLAS's (or the user's) choice. A program that loads fsad with dlopen while other threads
/// run BLAS or read the environment should set OPENBLAS_CORETYPE itself: the switch briefly sets
/// that variable and re-runs OpenBLAS's selection.
struct BlasInfo {
    std::string library;    ///< "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." (openblas_get_config)
    std::string core;       ///< the kernel set in use, e.g. "SkylakeX" (openblas_get_corename)
    std::string processor;  ///< the processor's widest vector instruction set: "AVX-512 BF16", "AVX-512", "AVX2", "AVX", "SSE"
    /// Who chose `core`: "OpenBLAS", "OPENBLAS_CORETYPE", or "fsad (OpenBLAS chose Prescott)";
    /// when fsad saw kernels below the processor but could not switch, "OpenBLAS (... cannot switch ...)".
    std::string chosen_by;
};
BlasInfo blas_info();

}  // namespace fsad
