// Caching allocators. A training step allocates the same sizes every iteration; returning
// blocks to per-size free lists (instead of to malloc) removes the allocation storm and the
// page faults of fresh large blocks. One allocator per device, all of one design
// (src/core/caching_pool.hpp): the host's in src/cpu/memory.cpp, each GPU's in src/cuda/runtime.cu.
#pragma once
#include <cstddef>
#include <cstdint>

#include "fsad/core/device.hpp"

namespace fsad {

struct AllocatorStats {
    size_t bytes_in_use = 0;    ///< handed out and not yet returned
    size_t bytes_cached = 0;    ///< returned, kept for reuse
    size_t peak_bytes_in_use = 0;
    size_t allocations = 0;     ///< calls that reached the system allocator
    size_t reuses = 0;          ///< calls served from the cache
    /// Tensor copies from this (CUDA) device to the host: each waits for the device's queued
    /// work, so a training step should make as few as possible (its losses, once per step).
    size_t reads_to_host = 0;
};

/// Returns a block of at least `bytes` (64-byte aligned) on `dev`. Throws fsad::Error on failure.
void* device_malloc(Device dev, size_t bytes);
/// Returns a block obtained from device_malloc with the same `bytes` to the cache.
void device_free(Device dev, void* p, size_t bytes) noexcept;
/// Releases every cached block of `dev` to the system.
void empty_cache(Device dev);
AllocatorStats allocator_stats(Device dev);
void reset_peak_stats(Device dev);

/// Copies `bytes` between any two devices (host<->device, device<->device, host<->host).
void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);

}  // namespace fsad
