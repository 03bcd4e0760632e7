// The CUDA runtime API as fsad's backend uses it, emulated on the CPU for the tests: built with
// FSAD_CUDA=EMULATED, the backend's sources (src/cuda/*.cu) compile with the host compiler
// against these headers, and the CPU-vs-CUDA parity suite (tests/test_cuda.cpp) runs on every CI
// run without a GPU. Kernels run on the SIMT emulator (tests/simt.hpp); cuDNN, cuBLAS and
// cuSOLVER calls are reference loops (tests/emu/emu.cpp) written from those libraries' manuals.
//
// What it checks that a GPU would (or should) catch, and reports as the CUDA error the call
// returns, with the detail on stderr:
// - Device memory is its own: every pointer a kernel, a copy or a library call receives must lie
//   in a live allocation of the right kind (device or host) and device, the whole range it
//   touches; fresh allocations are filled with NaNs, so reading memory nothing wrote shows.
// - Streams are lazy and independent: a stream's queued work runs, in order, only when the host
//   waits for that stream (stream or event synchronize, a copy into pageable host memory on it)
//   or for the device (cudaDeviceSynchronize, cudaFree). A host buffer read or written by a
//   queued copy (pinned memory) therefore sees what the host did since the call, and data one
//   stream produces is not there for another until the host waited for the first: races a fast
//   GPU would hide show every time. A copy from pageable memory takes its snapshot at the call,
//   as CUDA's staging does.
// - Launches: CUDA's limits on block and grid sizes; a kernel's barrier misuse (simt.hpp) becomes
//   the sticky launch failure of the next synchronisation.
// Not emulated: concurrency (work runs on the waiting host thread), cudaStreamWaitEvent (fsad
// orders streams by host waits), timing (events time the emulation), TF32.
// Settings (environment): FSAD_EMU_DEVICES (devices visible, default 1), FSAD_EMU_MEMORY_MIB
// (device memory, default 16384), FSAD_EMU_ORDER=reverse (blocks, warps and lanes run in reverse
// order: results that change have a race between threads), FSAD_EMU_CUDNN_BF16=unsupported|failing
// (cuDNN without bfloat16 convolutions: the search refuses bfloat16 tensors, or offers only failing
// algorithms, and a call with an algorithm is refused; read at each call).
#pragma once
#ifndef FSAD_CUDA_EMULATED
#define FSAD_CUDA_EMULATED 1
#endif
#include "../simt.hpp"

#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchFailure = 719,
    cudaErrorNoDevice = 100,
};
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr {
    cudaDevAttrClockRate = 13,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
};
enum libraryPropertyType { MAJOR_VERSION = 0, MINOR_VERSION = 1, PATCH_LEVEL = 2 };

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
    int multiProcessorCount;
    int clockRate;
};

const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int device);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
                                cudaStream_t s = nullptr);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);

// ------------------------------------------------------------------ what the library calls use
namespace fsad_emu {

/// A unit of queued device work; runs when the host waits.
struct Work {
    virtual ~Work() = default;
    virtual void run() = 0;
};
/// Queues `w` on stream s (nullptr: the default stream). Returns the launch's error, if any.
cudaError_t enqueue(cudaStream_t s, Work* w);
/// The device a stream belongs to (the current device for the default stream).
int stream_device(cudaStream_t s);
/// Checks that [p, p + bytes) lies in one live device allocation of `device`; otherwise prints
/// `what` and the problem to stderr and returns false.
bool check_device_range(const void* p, size_t bytes, int device, const char* what);
/// Checks that p points into a live device allocation of `device` (the extent is unknown).
bool check_device_pointer(const void* p, int device, const char* what);
/// Records a sticky launch error (as a failed kernel leaves the context).
void set_error(cudaError_t e, const char* what);
/// The order the SIMT emulator runs blocks, warps and lanes in: FSAD_EMU_ORDER=reverse, else
/// forward (a run in each order that gives the same results has no race between threads).
simt::Order kernel_order();

template <class T>
bool check_kernel_arg(const T& a, int device, const char* kernel, int i) {
    if constexpr (std::is_pointer_v<T>) {
        if (a == nullptr) return true;
        char what[160];
        std::snprintf(what, sizeof what, "kernel %s, argument %d", kernel, i);
        return check_device_pointer(static_cast<const void*>(a), device, what);
    } else {
        return true;
    }
}

template <class... P>
struct KernelWork final : Work {
    void (*kernel)(P...);
    dim3 grid, block;
    std::tuple<std::decay_t<P>...> params;
    template <class... A>
    KernelWork(void (*k)(P...), dim3 g, dim3 b, A&&... a) : kernel(k), grid(g), block(b), params(std::forward<A>(a)...) {}
    void run() override {
        simt::Runtime& rt = simt::Runtime::get();
        rt.order = kernel_order();
        std::apply([&](auto&... a) { rt.launch(kernel, grid, block, a...); }, params);
    }
};

/// kernel<<<grid, block, 0, s>>>(args...): CUDA's launch checks now, the kernel queued on s.
template <class... P, class... A>
void launch(cudaStream_t s, void (*kernel)(P...), dim3 grid, dim3 block, A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "fsad_emu::launch: wrong number of kernel arguments");
    const uint64_t threads = uint64_t{block.x} * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
        set_error(cudaErrorInvalidConfiguration, "kernel launch outside CUDA's grid and block limits");
        return;
    }
    auto* w = new KernelWork<P...>(kernel, grid, block, std::forward<A>(args)...);
    const int device = stream_device(s);
    bool ok = true;
    int i = 0;
    std::apply([&](const auto&... a) { ((ok = check_kernel_arg(a, device, "launch", i++) && ok), ...); }, w->params);
    if (!ok) {
        delete w;
        set_error(cudaErrorIllegalAddress, "kernel argument outside the device's allocations");
        return;
    }
    enqueue(s, w);
}

}  // namespace fsad_emu
