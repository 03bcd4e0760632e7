// CPU memory: the caching host allocator (src/core/caching_pool.hpp) and the threaded copy that
// fills the CUDA backend's pinned staging buffers.
#include <cstdlib>
#include <cstring>

#include "../core/caching_pool.hpp"
#include "kernels.hpp"

namespace fsad::cpu {
namespace {

struct HostMemory {
    // 4 KiB granularity below 1 MiB, 1/16 of the power of two above
    size_t round(size_t bytes) const {
        if (bytes < 64) return 64;
        if (bytes < (1u << 20)) return (bytes + 4095) & ~size_t(4095);
        size_t p = 1;
        while (p < bytes) p <<= 1;
        const size_t step = p / 16;
        return (bytes + step - 1) / step * step;
    }
    // best fit up to 1.5x for large requests only: small blocks are cheap to keep exact
    size_t reuse_limit(size_t size) const { return size >= (size_t(1) << 20) ? size + size / 2 : size; }
    void* allocate(size_t size) { return std::aligned_alloc(64, size); }
    void deallocate(void* p) { std::free(p); }
    void settle() {}
};

CachingPool<HostMemory>& pool() {
    static auto* p = new CachingPool<HostMemory>();  // never destroyed: tensors may outlive static destructors
    return *p;
}

}  // namespace

void* alloc(size_t bytes) {
    void* p = pool().allocate(bytes);
    if (!p) throw Error("device_malloc: out of host memory allocating " + std::to_string(bytes) + " bytes");
    return p;
}
void release(void* p, size_t bytes) noexcept { pool().release(p, bytes); }
void empty_cache() { pool().release_cached(); }
AllocatorStats stats() { return pool().stats(); }
void reset_peak() { pool().reset_peak(); }

void parallel_memcpy(void* dst, const void* src, size_t bytes) {
    constexpr size_t kBlock = size_t(1) << 20;
    const int64_t blocks = static_cast<int64_t>((bytes + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int64_t b = 0; b < blocks; ++b) {
        const size_t off = static_cast<size_t>(b) * kBlock;
        std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, std::min(kBlock, bytes - off));
    }
}

}  // namespace fsad::cpu
