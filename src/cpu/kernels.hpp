// CPU implementations of the op front end (include/fsad/core/ops.hpp). Arguments are already
// validated; outputs are preallocated by the front end and written with '=' semantics.
#pragma once
#include <vector>

#include "fsad/core/ops.hpp"

namespace fsad::cpu {
using ops::BatchNormSaved;
using ops::Conv2dParams;
using ops::PreparedConv;
using ops::Pool2dParams;

void fill(float* p, int64_t n, float v);
bool conv_packing_available();

#include "../core/kernel_decls.inc"

}  // namespace fsad::cpu
