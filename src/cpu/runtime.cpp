// CPU runtime: the caching host allocator, memcpy dispatch, thread control, device queries.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_map>
#include <mutex>
#include <vector>

#include "fsad/core/allocator.hpp"
#include "fsad/core/parallel.hpp"
#include "fsad/core/tensor.hpp"
#if FSAD_WITH_CUDA
#include "../cuda/kernels.hpp"
#endif

namespace fsad {
namespace {

// Blocks are rounded up so that nearby sizes share a free list: 4 KiB granularity below 1 MiB,
// 1/16 of the power of two above.
size_t round_size(size_t bytes) {
    if (bytes < 64) return 64;
    if (bytes < (1u << 20)) return (bytes + 4095) & ~size_t(4095);
    size_t p = 1;
    while (p < bytes) p <<= 1;
    size_t step = p / 16;
    return (bytes + step - 1) / step * step;
}

struct HostCache {
    std::mutex mu;
    std::multimap<size_t, void*> free_blocks;
    std::unordered_map<void*, size_t> live;  // block -> its real size (best fit may hand out more)
    AllocatorStats stats;
    ~HostCache() {
        for (auto& kv : free_blocks) std::free(kv.second);
    }
};
HostCache& host_cache() {
    static HostCache* c = new HostCache();  // never destroyed: tensors may outlive static destructors
    return *c;
}

}  // namespace

void* device_malloc(Device dev, size_t bytes) {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::alloc(dev.index, bytes);
#else
    if (dev.is_cuda()) throw Error("device_malloc: this build of fsad has no CUDA backend (configure with FSAD_CUDA)");
#endif
    HostCache& c = host_cache();
    size_t sz = round_size(bytes);
    {
        std::lock_guard<std::mutex> lk(c.mu);
        // best fit among cached blocks up to 1.5x the request (large requests only: small
        // blocks are cheap to keep exact)
        auto it = c.free_blocks.lower_bound(sz);
        const size_t limit = sz >= (size_t(1) << 20) ? sz + sz / 2 : sz;
        if (it != c.free_blocks.end() && it->first <= limit) {
            void* p = it->second;
            sz = it->first;
            c.free_blocks.erase(it);
            c.live[p] = sz;
            c.stats.bytes_cached -= sz;
            c.stats.bytes_in_use += sz;
            c.stats.peak_bytes_in_use = std::max(c.stats.peak_bytes_in_use, c.stats.bytes_in_use);
            ++c.stats.reuses;
            return p;
        }
    }
    void* p = std::aligned_alloc(64, sz);
    if (!p) {
        empty_cache(dev);
        p = std::aligned_alloc(64, sz);
    }
    if (!p) throw Error("device_malloc: out of host memory allocating " + std::to_string(sz) + " bytes");
    std::lock_guard<std::mutex> lk(c.mu);
    c.live[p] = sz;
    c.stats.bytes_in_use += sz;
    c.stats.peak_bytes_in_use = std::max(c.stats.peak_bytes_in_use, c.stats.bytes_in_use);
    ++c.stats.allocations;
    return p;
}

void device_free(Device dev, void* p, size_t bytes) noexcept {
    if (!p) return;
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::release(dev.index, p, bytes);
#endif
    if (dev.is_cuda()) return;
    HostCache& c = host_cache();
    std::lock_guard<std::mutex> lk(c.mu);
    auto it = c.live.find(p);
    const size_t sz = it != c.live.end() ? it->second : round_size(bytes);
    if (it != c.live.end()) c.live.erase(it);
    c.free_blocks.emplace(sz, p);
    c.stats.bytes_in_use -= sz;
    c.stats.bytes_cached += sz;
}

void empty_cache(Device dev) {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::empty_cache(dev.index);
#endif
    if (dev.is_cuda()) return;
    HostCache& c = host_cache();
    std::lock_guard<std::mutex> lk(c.mu);
    for (auto& kv : c.free_blocks) std::free(kv.second);
    c.free_blocks.clear();
    c.stats.bytes_cached = 0;
}

AllocatorStats allocator_stats(Device dev) {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::stats(dev.index);
#endif
    if (dev.is_cuda()) return {};
    HostCache& c = host_cache();
    std::lock_guard<std::mutex> lk(c.mu);
    return c.stats;
}

void reset_peak_stats(Device dev) {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::reset_peak(dev.index);
#endif
    if (dev.is_cuda()) return;
    HostCache& c = host_cache();
    std::lock_guard<std::mutex> lk(c.mu);
    c.stats.peak_bytes_in_use = c.stats.bytes_in_use;
}

#if FSAD_WITH_CUDA
namespace {
// memcpy over the CPU threads in 1 MiB blocks (fills the pinned staging buffers of large
// host-to-device copies)
void parallel_memcpy(void* dst, const void* src, size_t bytes) {
    constexpr size_t kBlock = size_t(1) << 20;
    const int64_t blocks = static_cast<int64_t>((bytes + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int64_t b = 0; b < blocks; ++b) {
        const size_t off = static_cast<size_t>(b) * kBlock;
        std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, std::min(kBlock, bytes - off));
    }
}
// From this size on, host-to-device copies go through pinned staging buffers (FSAD_CUDA_STAGED_COPY=0
// turns that off, for comparison)
constexpr size_t kStagedCopyMin = size_t(8) << 20;
bool staged_copies() {
    const char* e = std::getenv("FSAD_CUDA_STAGED_COPY");
    return !(e && std::strcmp(e, "0") == 0);
}
}  // namespace
#endif

void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
#if FSAD_WITH_CUDA
    if (dst_dev.is_cuda() && src_dev.is_cpu() && bytes >= kStagedCopyMin && staged_copies() &&
        cuda::copy_to_device_staged(dst, dst_dev.index, src, bytes, parallel_memcpy))
        return;
    if (dst_dev.is_cuda() || src_dev.is_cuda()) return cuda::copy_bytes(dst, dst_dev, src, src_dev, bytes);
#else
    if (dst_dev.is_cuda() || src_dev.is_cuda())
        throw Error("device_memcpy: this build of fsad has no CUDA backend");
#endif
    if (bytes) std::memmove(dst, src, bytes);
}

Device parse_device(const std::string& s) {
    if (s == "cpu") return Device::cpu();
    if (s == "cuda") return Device::cuda(0);
    if (s.rfind("cuda:", 0) == 0) {
        char* end = nullptr;
        long i = std::strtol(s.c_str() + 5, &end, 10);
        if (end && *end == 0 && end != s.c_str() + 5 && i >= 0) return Device::cuda(static_cast<int>(i));
    }
    throw Error("unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
}

#if FSAD_WITH_CUDA
void synchronize(Device dev) {
    if (dev.is_cuda()) cuda::synchronize(dev.index);
}
std::string cuda_device_name(int index) { return cuda::device_name(index); }
double cuda_fp32_peak_tflops(int index) { return cuda::fp32_peak_tflops(index); }
std::string cuda_versions() { return cuda::versions(); }
bool cuda_available() { return cuda::device_count() > 0; }
int cuda_device_count() { return cuda::device_count(); }
bool cuda_built() { return true; }
#else
void synchronize(Device) {}
std::string cuda_device_name(int index) {
    throw CudaError("cuda:" + std::to_string(index) + ": this build of fsad has no CUDA backend");
}
double cuda_fp32_peak_tflops(int index) {
    throw CudaError("cuda:" + std::to_string(index) + ": this build of fsad has no CUDA backend");
}
std::string cuda_versions() { return {}; }
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
bool cuda_built() { return false; }
#endif

// fsad threads its own kernels and calls OpenBLAS single-threaded (src/cpu/gemm.hpp says why).
namespace {
const bool g_blas_single = [] {
    openblas_set_num_threads(1);
    return true;
}();
}  // namespace

void set_num_threads(int n) {
    if (n < 1) throw Error("set_num_threads: need at least 1 thread, got " + std::to_string(n));
    omp_set_num_threads(n);
    openblas_set_num_threads(1);
    (void)g_blas_single;
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace fsad
