// Thread count for fsad's CPU kernels and for OpenBLAS. Default: all cores.
#pragma once

namespace fsad {

/// Sets the number of threads used by CPU kernels and BLAS (n >= 1).
void set_num_threads(int n);
int get_num_threads();

}  // namespace fsad
