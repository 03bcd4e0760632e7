// Shared plumbing of the CUDA backend: typed errors that carry the failing call, its status
// string, file and line; the per-device stream; per-thread library handles (cuBLAS, cuDNN,
// cuSOLVER) created lazily; launch-size helpers and block reductions.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cstdint>

#include "fsad/core/error.hpp"

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
        if (fsad_s_ != CUDNN_STATUS_SUCCESS) ::fsad::cuda::throw_error(#call, cudnnGetErrorString(fsad_s_), __FILE__, __LINE__); \
    } while (0)
#define FSAD_CUBLAS_CHECK(call)                                                                                  \
    do {                                                                                                         \
        const cublasStatus_t fsad_s_ = (call);                                                                   \
        if (fsad_s_ != CUBLAS_STATUS_SUCCESS) ::fsad::cuda::throw_error(#call, cublasGetStatusString(fsad_s_), __FILE__, __LINE__); \
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

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
    const int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(std::clamp<int64_t>(b, 1, 65535LL * 32));
}

/// Grid-stride loop over [0, n) with a 64-bit index.
#define FSAD_GRID_LOOP(i, n) \
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)
/// The same with an index of type I: uint32_t where every index fits in 31 bits (index arithmetic
/// per value in 32 bits: a 64-bit division costs dozens of instructions), int64_t otherwise.
#define FSAD_INDEX_LOOP(I, j, n) \
    for (I j = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; j < (n); j += static_cast<I>(blockDim.x) * gridDim.x)

/// Sum over the block (blockDim.x a multiple of 32, at most 1024); the result is valid in thread 0.
template <class T>
__device__ inline T block_sum(T v) {
    __shared__ T warp_sums[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // warp_sums may still be read by a previous call
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    const int nwarps = (blockDim.x + 31) >> 5;
    v = threadIdx.x < nwarps ? warp_sums[threadIdx.x] : T(0);
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

}  // namespace fsad::cuda
