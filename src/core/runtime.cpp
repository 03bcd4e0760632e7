// The device-neutral runtime: allocation and copies dispatched to the backend of the device
// (src/cpu/memory.cpp, src/cuda/runtime.cu), device names parsed, CUDA devices queried. Without
// the CUDA backend a CUDA device is refused here, with a message.
#include <cstdlib>
#include <cstring>

#include "../cpu/kernels.hpp"
#include "fsad/core/allocator.hpp"
#include "fsad/core/device.hpp"
#include "fsad/core/error.hpp"
#if FSAD_WITH_CUDA
#include "../cuda/kernels.hpp"
#endif

namespace fsad {

void* device_malloc(Device dev, size_t bytes) {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::alloc(dev.index, bytes);
#else
    if (dev.is_cuda()) throw Error("device_malloc: this build of fsad has no CUDA backend (configure with FSAD_CUDA)");
#endif
    return cpu::alloc(bytes);
}

void device_free(Device dev, void* p, size_t bytes) noexcept {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::release(dev.index, p, bytes);
#endif
    if (dev.is_cpu()) cpu::release(p, bytes);
}

void empty_cache(Device dev) {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::empty_cache(dev.index);
#endif
    if (dev.is_cpu()) cpu::empty_cache();
}

AllocatorStats allocator_stats(Device dev) {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::stats(dev.index);
#endif
    return dev.is_cpu() ? cpu::stats() : AllocatorStats{};
}

void reset_peak_stats(Device dev) {
#if FSAD_WITH_CUDA
    if (dev.is_cuda()) return cuda::reset_peak(dev.index);
#endif
    if (dev.is_cpu()) cpu::reset_peak();
}

#if FSAD_WITH_CUDA
namespace {
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
        cuda::copy_to_device_staged(dst, dst_dev.index, src, bytes, cpu::parallel_memcpy))
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

}  // namespace fsad
