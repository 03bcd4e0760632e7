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
void synchronize(int device);
std::string device_name(int device);

// ------------------------------------------------------------------ ops
void fill(const Tensor& t, float v);

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p, const Tensor& y);
void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dParams& p, const Tensor* dx,
                     const Tensor* dw, const Tensor* db);

void batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float momentum, float eps, const Tensor& mean,
                             const Tensor& invstd, const Tensor& y, math::Activation act);
void batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                            const Tensor& running_var, float eps, const Tensor& y, math::Activation act);
/// Shared by train and eval backward: `batch_stats` says whether mean/invstd depend on x;
/// `y` (the fused output) is read when act is not Identity.
void batchnorm_backward(const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& invstd,
                        bool batch_stats, const Tensor& dy, const Tensor* y, math::Activation act, const Tensor* dx,
                        const Tensor* dgamma, const Tensor* dbeta);

void activation_forward(const Tensor& x, math::Activation a, const Tensor& y);
void activation_backward(const Tensor& y, const Tensor& dy, math::Activation a, const Tensor& dx);

void maxpool2d_forward(const Tensor& x, const Pool2dParams& p, const Tensor& y);
void maxpool2d_backward(const Tensor& x, const Tensor& dy, const Pool2dParams& p, const Tensor& dx);
void avgpool2d_forward(const Tensor& x, const Pool2dParams& p, const Tensor& y);
void avgpool2d_backward(const Tensor& dy, const Pool2dParams& p, const Tensor& dx);
void global_avgpool_forward(const Tensor& x, const Tensor& y);
void global_avgpool_backward(const Tensor& dy, const Tensor& dx);

void axpby(float alpha, const Tensor& a, float beta, const Tensor& b, const Tensor& y);
void mul(const Tensor& a, const Tensor& b, const Tensor& y);
void affine(const Tensor& x, float alpha, float beta, const Tensor& y);

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor* dx, const Tensor* dw,
                     const Tensor* db);

/// Copies a [outer, src_inner] block into dst at column offset `col` of a [outer, dst_inner] layout.
void copy_strided(const Tensor& src, int64_t outer, int64_t src_inner, const Tensor& dst, int64_t dst_inner,
                  int64_t col, bool to_dst);
void gather_rows(const Tensor& x, const std::vector<int64_t>& index, const Tensor& y);
void scatter_add_rows(const Tensor& dy, const std::vector<int64_t>& index, const Tensor& dx);

void l2_normalize_forward(const Tensor& x, float eps, const Tensor& y);
void l2_normalize_backward(const Tensor& x, const Tensor& dy, float eps, const Tensor& dx);
void cosine_similarity_forward(const Tensor& a, const Tensor& b, float eps, const Tensor& c);
void cosine_similarity_backward(const Tensor& a, const Tensor& b, const Tensor& dc, float eps, const Tensor* da,
                                const Tensor* db);

void sum_all(const Tensor& x, const Tensor& y);
void sum_dim(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& y);
void sum_dim_backward(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, const Tensor& dx);

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const math::AdamStep& s);
void ema_update(const Tensor& target, const Tensor& online, float beta);

}  // namespace fsad::cuda
