// What fsad's kernels need beyond CUDA's builtins: launch-size helpers, grid-stride loops and
// block reductions. No CUDA runtime or library header: the kernel headers (batchnorm.cuh,
// pool.cuh, rowwise.cuh, density.cuh) build on this alone, so that the CPU tests can compile
// them with the host compiler and run them on the SIMT emulator (tests/simt.hpp); nvcc builds the
// same text into the backend (the .cu files, which add the runtime, handles and errors).
//
// A kernel header's sequences (an op's kernels in order, with their launch plans) take a
// launcher: launch(kernel, grid, block, args...). The backend's is StreamLaunch (common.cuh), the
// tests' the emulator's.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

#if defined(__CUDACC__)
#define FSAD_KERNEL_ABI gpu
#elif defined(FSAD_CUDA_EMULATED)  // the backend built against the CUDA emulator (tests/emu)
#include <cuda_runtime.h>          // the emulator's, which brings tests/simt.hpp
#define FSAD_KERNEL_ABI emu
#elif defined(FSAD_SIMT)
#define FSAD_KERNEL_ABI simt
#else
#error "src/cuda/device.cuh: compile with nvcc, or include tests/simt.hpp first"
#endif

namespace fsad::cuda {
// The kernels and their host-side plans live in an inline namespace named after the compiler
// that built them, so that a test binary linking the CUDA backend and holding the emulated
// copies has no two definitions of one name.
inline namespace FSAD_KERNEL_ABI {

// Kernels launched with more than 256 threads per block carry __launch_bounds__ of that size, so
// that nvcc keeps their registers within the block's share (a launch otherwise fails with "too
// many resources requested"); at 256 threads any kernel fits.
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
    v = static_cast<int>(threadIdx.x) < nwarps ? warp_sums[threadIdx.x] : T(0);
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

/// Launches kernel<uint32_t> when the n indices fit in 31 bits, kernel<int64_t> otherwise, over
/// blocks_for(n) blocks of kThreads; n is the kernel's last argument.
template <class Launch, class K32, class K64, class... A>
void launch_indexed(Launch& launch, K32 k32, K64 k64, int64_t n, A&&... args) {
    if (n < 0x7fffffffLL)
        launch(k32, blocks_for(n), kThreads, std::forward<A>(args)..., static_cast<uint32_t>(n));
    else
        launch(k64, blocks_for(n), kThreads, std::forward<A>(args)..., static_cast<int64_t>(n));
}

}  // namespace FSAD_KERNEL_ABI
}  // namespace fsad::cuda
