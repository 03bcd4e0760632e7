// Shared plumbing of the CUDA backend: typed errors that carry the failing call, its status
// string, file and line; the per-device stream; per-thread library handles (cuBLAS, cuDNN,
// cuSOLVER; the libraries themselves loaded on first use, libraries.hpp) created lazily; the launcher of the kernel headers' sequences (device.cuh has the
// launch-size helpers, loops and block reductions).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "device.cuh"
#include "fsad/core/error.hpp"
#include "kernels.hpp"
#include "libraries.hpp"  // cuDNN, cuBLAS, cuSOLVER: their headers and the tables of their functions

namespace fsad::cuda {

[[noreturn]] void throw_error(const char* call, const char* status, const char* file, int line);
const char* cusolver_status_string(cusolverStatus_t s);

}  // namespace fsad::cuda

#define FSAD_CUDA_CHECK(call)                                                                              \
    do {                                                                                                   \
        const cudaError_t fsad_e_ = (call);                                                                \
        if (fsad_e_ != cudaSuccess) ::fsad::cuda::throw_error(#call, cudaGetErrorString(fsad_e_), __FILE__, __LINE__); \
    } while (0)
#define FSAD_CUDNN_CHECK(call)                                                                               \
    do {                                                                                                     \
        const cudnnStatus_t fsad_s_ = (call);                                                                \
        if (fsad_s_ != CUDNN_STATUS_SUCCESS) ::fsad::cuda::throw_error(#call, ::fsad::cuda::cudnn_api().cudnnGetErrorString(fsad_s_), __FILE__, __LINE__); \
    } while (0)
#define FSAD_CUBLAS_CHECK(call)                                                                                  \
    do {                                                                                                         \
        const cublasStatus_t fsad_s_ = (call);                                                                   \
        if (fsad_s_ != CUBLAS_STATUS_SUCCESS) ::fsad::cuda::throw_error(#call, ::fsad::cuda::cublas_api().cublasGetStatusString(fsad_s_), __FILE__, __LINE__); \
    } while (0)
#define FSAD_CUSOLVER_CHECK(call)                                                                                        \
    do {                                                                                                                 \
        const cusolverStatus_t fsad_s_ = (call);                                                                         \
        if (fsad_s_ != CUSOLVER_STATUS_SUCCESS)                                                                          \
            ::fsad::cuda::throw_error(#call, ::fsad::cuda::cusolver_status_string(fsad_s_), __FILE__, __LINE__);           \
    } while (0)
/// After a kernel launch: reports a bad launch configuration at the launch site.
#define FSAD_CUDA_LAUNCH_CHECK() FSAD_CUDA_CHECK(cudaPeekAtLastError())

namespace fsad::cuda {

/// Per (thread, device): handles bound to the device's stream. All of fsad's GPU work on a device
/// runs on that one stream, so the caching allocator can hand a freed block to the next op
/// without synchronising (stream order makes the reuse safe).
struct Context {
    int device = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    cudnnHandle_t cudnn = nullptr;
    cusolverDnHandle_t cusolver = nullptr;
};
/// Makes `device` current on this thread and returns its context (handles created on first use).
Context& context(int device);
cudaStream_t stream(int device);

/// A scratch buffer per device that only grows (cuDNN workspaces, reduction partials).
void* workspace(int device, size_t bytes);

/// Scratch of one call from the caching allocator, returned when it goes out of scope (stream
/// order makes the reuse by the next op safe).
template <class T>
struct Scratch {
    int dev;
    size_t count;
    T* p;
    Scratch(int device, size_t n) : dev(device), count(n), p(static_cast<T*>(alloc(device, n * sizeof(T)))) {}
    ~Scratch() { release(dev, p, count * sizeof(T)); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

/// The backend's launcher for the kernel headers' sequences (device.cuh): on the device's stream,
/// a bad launch configuration reported at the launch.
struct StreamLaunch {
    cudaStream_t stream;
    template <class... P, class... A>
    void operator()(void (*kernel)(P...), dim3 grid, dim3 block, A&&... args) const {
#if defined(__CUDACC__)
        kernel<<<grid, block, 0, stream>>>(std::forward<A>(args)...);
#else  // FSAD_CUDA=EMULATED: queued on the stream for the SIMT emulator (tests/emu)
        fsad_emu::launch(stream, kernel, grid, block, std::forward<A>(args)...);
#endif
        FSAD_CUDA_LAUNCH_CHECK();
    }
};

}  // namespace fsad::cuda
