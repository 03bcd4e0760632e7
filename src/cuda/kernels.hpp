// CUDA implementations of the op front end (include/fsad/core/ops.hpp), the same signatures as
// src/cpu/kernels.hpp, on tensors of one CUDA device. Arguments are already
// validated; outputs are preallocated by the front end and written with '=' semantics.
#pragma once
#include <string>
#include <vector>

#include "fsad/core/allocator.hpp"

#include "fsad/core/ops.hpp"

namespace fsad::cuda {
using ops::BatchNormSaved;
using ops::Conv2dParams;
using ops::DensityCache;
using ops::DensityFit;
using ops::DensityFitOptions;
using ops::PreparedConv;
using ops::Pool2dParams;

// ------------------------------------------------------------------ runtime (runtime.cu)
int device_count() noexcept;  ///< 0 when there is no driver or no GPU
void* alloc(int device, size_t bytes);
void release(int device, void* p, size_t bytes) noexcept;
void empty_cache(int device);
AllocatorStats stats(int device);
void reset_peak(int device);
/// Any direction; host memory is pageable. Returns after the copy is complete.
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
/// Host-to-device copy through two pinned buffers that `fill` (the host's parallel memcpy) fills
/// in turn while the DMA engine drains the other; returns after the copy is complete, or false
/// (nothing copied) when no pinned memory could be allocated.
using HostCopy = void (*)(void* dst, const void* src, size_t bytes);
bool copy_to_device_staged(void* dst, int device, const void* src, size_t bytes, HostCopy fill);
void synchronize(int device);
std::string device_name(int device);
/// SMs x FP32 lanes per SM x 2 x the SM clock: the device's FP32 (non-tensor-core) peak.
double fp32_peak_tflops(int device);
std::string versions();  ///< runtime, driver and library versions (no GPU needed)
/// Op profiling (ops::Profiler): an event recorded on the device's stream now; the milliseconds
/// between two recorded events (waits for the second); destroying one (null is ignored).
void* event_record(int device);
double event_elapsed_ms(void* start, void* stop);
void event_destroy(void* event) noexcept;

// ------------------------------------------------------------------ ops
void fill(const Tensor& t, float v);

#include "../core/kernel_decls.inc"

// ------------------------------------------------------------------ within the backend
/// y = act(batchnorm_eval(x) + residual) in one pass (residual may be null; y may be x): the
/// epilogue of the inference convolution (conv.cu).
void batchnorm_eval_residual(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float eps, const Tensor* residual, math::Activation act,
                             const Tensor& y);

/// bfloat16 operands of the BF16 convolutions (conv.cu), as bits, on the device's stream:
/// n floats rounded to nearest even into dst; n bfloat16 widened (exactly) into dst.
void to_bf16(int device, const float* src, uint16_t* dst, int64_t n);
void from_bf16(int device, const uint16_t* src, float* dst, int64_t n);

}  // namespace fsad::cuda
