// CPU runtime: the caching host allocator, memcpy dispatch, thread control, device queries.
#include <cblas.h>
#include <dlfcn.h>
#include <strings.h>
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
