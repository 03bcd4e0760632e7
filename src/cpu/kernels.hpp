// CPU implementations of the op front end (include/fsad/core/ops.hpp). Arguments are already
// validated; outputs are preallocated by the front end and written with '=' semantics.
#pragma once
#include <vector>

#include "fsad/core/allocator.hpp"
#include "fsad/core/ops.hpp"

namespace fsad::cpu {
using ops::BatchNormSaved;
using ops::Conv2dParams;
using ops::DensityCache;
using ops::DensityFit;
using ops::DensityFitOptions;
using ops::PreparedConv;
using ops::Pool2dParams;

// ------------------------------------------------------------------ memory (memory.cpp)
/// The caching host allocator behind device_malloc & co. for the CPU; alloc throws fsad::Error
/// when the host has no memory left.
void* alloc(size_t bytes);
void release(void* p, size_t bytes) noexcept;
void empty_cache();
AllocatorStats stats();
void reset_peak();
/// memcpy over the CPU threads in 1 MiB blocks (fills the pinned staging buffers of large
/// host-to-device copies)
void parallel_memcpy(void* dst, const void* src, size_t bytes);

// ------------------------------------------------------------------ ops
void fill(float* p, int64_t n, float v);
bool conv_packing_available();

#include "../core/kernel_decls.inc"

}  // namespace fsad::cpu
