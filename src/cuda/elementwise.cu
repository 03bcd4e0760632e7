// Element-wise, row-wise and reduction ops on the GPU, and the linear layer through cuBLAS.
// The arithmetic is fsad/core/math.hpp's (shared with the CPU loops); the formulas and gradient
// rules are those stated at the top of src/cpu/elementwise.cpp and src/cpu/rowwise.cpp.
// Reductions accumulate in double (as the CPU does) and are deterministic: no atomics except in
// scatter_add_rows, whose repeated indices must add.
#include "common.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

int dev_of(const Tensor& t) { return t.device().index; }
cudaStream_t st(const Tensor& t) { return context(dev_of(t)).stream; }

__global__ void fill_k(float* p, int64_t n, float v) {
    FSAD_GRID_LOOP(i, n) p[i] = v;
}
__global__ void activation_k(const float* x, float* y, int64_t n, math::Activation a) {
    FSAD_GRID_LOOP(i, n) y[i] = math::activation(x[i], a);
}
__global__ void activation_grad_k(const float* y, const float* dy, float* dx, int64_t n, math::Activation a) {
    FSAD_GRID_LOOP(i, n) dx[i] = math::activation_grad(y[i], dy[i], a);
}
__global__ void axpby_k(float alpha, const float* a, float beta, const float* b, float* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = alpha * a[i] + beta * b[i];
}
__global__ void mul_k(const float* a, const float* b, float* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = a[i] * b[i];
}
__global__ void affine_k(const float* x, float alpha, float beta, float* y, int64_t n) {
    FSAD_GRID_LOOP(i, n) y[i] = alpha * x[i] + beta;
}
__global__ void adam_k(float* p, const float* g, float* m, float* v, int64_t n, math::AdamStep s) {
    FSAD_GRID_LOOP(i, n) math::adam_update(p[i], g[i], m[i], v[i], s);
}
__global__ void ema_k(float* t, const float* o, int64_t n, float beta) {
    FSAD_GRID_LOOP(i, n) t[i] = math::ema(t[i], o[i], beta);
}
__global__ void add_bias_k(float* y, const float* b, int64_t rows, int64_t cols) {
    FSAD_GRID_LOOP(i, rows * cols) y[i] += b[i % cols];
}
// y[o*inner + k] = sum_i x[(o*n + i)*inner + k]: one thread per output, double accumulation
__global__ void sum_dim_k(const float* x, float* y, int64_t outer, int64_t n, int64_t inner) {
    FSAD_GRID_LOOP(j, outer * inner) {
        const int64_t o = j / inner, k = j % inner;
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) s += x[(o * n + i) * inner + k];
        y[j] = static_cast<float>(s);
    }
}
__global__ void sum_dim_backward_k(const float* dy, float* dx, int64_t outer, int64_t n, int64_t inner) {
    FSAD_GRID_LOOP(j, outer * n * inner) {
        const int64_t o = j / (n * inner), k = j % inner;
        dx[j] = dy[o * inner + k];
    }
}
// two-stage deterministic sum: block partials, then one block over the partials
__global__ void partial_sums_k(const float* x, int64_t n, double* partial) {
    double s = 0.0;
    FSAD_GRID_LOOP(i, n) s += x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void finish_sum_k(const double* partial, int n, float* y) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_sum(s);
    if (threadIdx.x == 0) y[0] = static_cast<float>(s);
}
__global__ void gather_rows_k(const float* x, const int64_t* idx, float* y, int64_t m, int64_t row) {
    FSAD_GRID_LOOP(j, m * row) y[j] = x[idx[j / row] * row + j % row];
}
__global__ void scatter_add_rows_k(const float* dy, const int64_t* idx, float* dx, int64_t m, int64_t row) {
    FSAD_GRID_LOOP(j, m * row) atomicAdd(dx + idx[j / row] * row + j % row, dy[j]);
}

// ---- row-wise (one block per row)
__global__ void l2_normalize_k(const float* x, float* y, int64_t d, float eps) {
    const float* xr = x + blockIdx.x * d;
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) s += static_cast<double>(xr[k]) * xr[k];
    __shared__ double r;
    s = block_sum(s);
    if (threadIdx.x == 0) r = fmax(sqrt(s), static_cast<double>(eps));
    __syncthreads();
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) y[blockIdx.x * d + k] = static_cast<float>(xr[k] / r);
}
__global__ void l2_normalize_backward_k(const float* x, const float* dy, float* dx, int64_t d, float eps) {
    const float* xr = x + blockIdx.x * d;
    const float* g = dy + blockIdx.x * d;
    double s = 0.0, xg = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        s += static_cast<double>(xr[k]) * xr[k];
        xg += static_cast<double>(xr[k]) * g[k];
    }
    __shared__ double nx2, dot;
    s = block_sum(s);
    if (threadIdx.x == 0) nx2 = s;
    xg = block_sum(xg);
    if (threadIdx.x == 0) dot = xg;
    __syncthreads();
    const double nx = sqrt(nx2);
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x)
        dx[blockIdx.x * d + k] = nx > eps ? static_cast<float>(g[k] / nx - xr[k] * dot / (nx2 * nx)) : static_cast<float>(g[k] / eps);
}
__global__ void cosine_k(const float* a, const float* b, float* c, int64_t d, float eps) {
    const float* ar = a + blockIdx.x * d;
    const float* br = b + blockIdx.x * d;
    double aa = 0, bb = 0, ab = 0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        aa += static_cast<double>(ar[k]) * ar[k];
        bb += static_cast<double>(br[k]) * br[k];
        ab += static_cast<double>(ar[k]) * br[k];
    }
    aa = block_sum(aa);
    bb = block_sum(bb);
    ab = block_sum(ab);
    if (threadIdx.x == 0) c[blockIdx.x] = static_cast<float>(ab / fmax(sqrt(aa * bb), static_cast<double>(eps)));
}
__global__ void cosine_backward_k(const float* a, const float* b, const float* dc, float* da, float* db, int64_t d,
                                  float eps) {
    const float* ar = a + blockIdx.x * d;
    const float* br = b + blockIdx.x * d;
    double aa = 0, bb = 0, ab = 0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        aa += static_cast<double>(ar[k]) * ar[k];
        bb += static_cast<double>(br[k]) * br[k];
        ab += static_cast<double>(ar[k]) * br[k];
    }
    __shared__ double na2, nb2, nab;
    aa = block_sum(aa);
    if (threadIdx.x == 0) na2 = aa;
    bb = block_sum(bb);
    if (threadIdx.x == 0) nb2 = bb;
    ab = block_sum(ab);
    if (threadIdx.x == 0) nab = ab;
    __syncthreads();
    const double raw = sqrt(na2 * nb2), g = dc[blockIdx.x];
    const double c = nab / raw;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        if (raw > eps) {
            if (da) da[blockIdx.x * d + k] = static_cast<float>(g * (br[k] / raw - c * ar[k] / na2));
            if (db) db[blockIdx.x * d + k] = static_cast<float>(g * (ar[k] / raw - c * br[k] / nb2));
        } else {
            if (da) da[blockIdx.x * d + k] = static_cast<float>(g * br[k] / eps);
            if (db) db[blockIdx.x * d + k] = static_cast<float>(g * ar[k] / eps);
        }
    }
}

// device copy of a host index vector (ordered on the stream; the host vector may go away after
// the call because cudaMemcpyAsync from pageable memory returns once the data is staged)
int64_t* device_index(const std::vector<int64_t>& index, int device) {
    const size_t bytes = index.size() * sizeof(int64_t);
    auto* d = static_cast<int64_t*>(alloc(device, bytes));
    FSAD_CUDA_CHECK(cudaMemcpyAsync(d, index.data(), bytes, cudaMemcpyHostToDevice, context(device).stream));
    return d;
}

}  // namespace

void fill(const Tensor& t, float v) {
    const int64_t n = t.numel();
    fill_k<<<blocks_for(n), kThreads, 0, st(t)>>>(t.data(), n, v);
    FSAD_CUDA_LAUNCH_CHECK();
}

void activation_forward(const Tensor& x, math::Activation a, const Tensor& y) {
    activation_k<<<blocks_for(x.numel()), kThreads, 0, st(x)>>>(x.data(), y.data(), x.numel(), a);
    FSAD_CUDA_LAUNCH_CHECK();
}
void activation_backward(const Tensor& y, const Tensor& dy, math::Activation a, const Tensor& dx) {
    activation_grad_k<<<blocks_for(y.numel()), kThreads, 0, st(y)>>>(y.data(), dy.data(), dx.data(), y.numel(), a);
    FSAD_CUDA_LAUNCH_CHECK();
}
void axpby(float alpha, const Tensor& a, float beta, const Tensor& b, const Tensor& y) {
    axpby_k<<<blocks_for(a.numel()), kThreads, 0, st(a)>>>(alpha, a.data(), beta, b.data(), y.data(), a.numel());
    FSAD_CUDA_LAUNCH_CHECK();
}
void mul(const Tensor& a, const Tensor& b, const Tensor& y) {
    mul_k<<<blocks_for(a.numel()), kThreads, 0, st(a)>>>(a.data(), b.data(), y.data(), a.numel());
    FSAD_CUDA_LAUNCH_CHECK();
}
void affine(const Tensor& x, float alpha, float beta, const Tensor& y) {
    affine_k<<<blocks_for(x.numel()), kThreads, 0, st(x)>>>(x.data(), alpha, beta, y.data(), x.numel());
    FSAD_CUDA_LAUNCH_CHECK();
}
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const math::AdamStep& s) {
    adam_k<<<blocks_for(param.numel()), kThreads, 0, st(param)>>>(param.data(), grad.data(), m.data(), v.data(),
                                                                   param.numel(), s);
    FSAD_CUDA_LAUNCH_CHECK();
}
void ema_update(const Tensor& target, const Tensor& online, float beta) {
    ema_k<<<blocks_for(target.numel()), kThreads, 0, st(target)>>>(target.data(), online.data(), target.numel(), beta);
    FSAD_CUDA_LAUNCH_CHECK();
}

// y[N,out] = x[N,in] W[out,in]^T (+ b). Row-major arrays are column-major transposes, so cuBLAS
// computes y^T = W x^T as gemm(T, N).
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
    const int n = static_cast<int>(x.dim(0)), in = static_cast<int>(x.dim(1)), out = static_cast<int>(w.dim(0));
    Context& c = context(dev_of(x));
    const float one = 1.0f, zero = 0.0f;
    if (n > 0)
        FSAD_CUBLAS_CHECK(cublasSgemm(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w.data(), in, x.data(), in, &zero,
                                      y.data(), out));
    if (bias && n > 0) {
        add_bias_k<<<blocks_for(y.numel()), kThreads, 0, c.stream>>>(y.data(), bias->data(), n, out);
        FSAD_CUDA_LAUNCH_CHECK();
    }
}

// dx = dy W  (dx^T = W^T dy^T: gemm(N, N)); dW = dy^T x (dW^T = x^T dy: gemm(N, T)); db = column sums
void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor* dx, const Tensor* dw,
                     const Tensor* db) {
    const int n = static_cast<int>(x.dim(0)), in = static_cast<int>(x.dim(1)), out = static_cast<int>(w.dim(0));
    Context& c = context(dev_of(x));
    const float one = 1.0f, zero = 0.0f;
    if (dx) {
        if (n > 0)
            FSAD_CUBLAS_CHECK(cublasSgemm(c.cublas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w.data(), in, dy.data(), out,
                                          &zero, dx->data(), in));
    }
    if (dw) {
        if (n > 0)
            FSAD_CUBLAS_CHECK(cublasSgemm(c.cublas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x.data(), in, dy.data(), out,
                                          &zero, dw->data(), in));
        else
            fill(*dw, 0.0f);
    }
    if (db) sum_dim(dy, 1, n, out, *db);
}

void copy_strided(const Tensor& src, int64_t outer, int64_t src_inner, const Tensor& dst, int64_t dst_inner, int64_t col,
                  bool to_dst) {
    if (outer == 0 || src_inner == 0) return;
    cudaStream_t s = st(src);
    const size_t w = static_cast<size_t>(src_inner) * sizeof(float);
    const size_t sp = static_cast<size_t>(src_inner) * sizeof(float), dp = static_cast<size_t>(dst_inner) * sizeof(float);
    float* d = dst.data() + col;
    if (to_dst)
        FSAD_CUDA_CHECK(cudaMemcpy2DAsync(d, dp, src.data(), sp, w, static_cast<size_t>(outer), cudaMemcpyDeviceToDevice, s));
    else
        FSAD_CUDA_CHECK(cudaMemcpy2DAsync(src.data(), sp, d, dp, w, static_cast<size_t>(outer), cudaMemcpyDeviceToDevice, s));
}

void gather_rows(const Tensor& x, const std::vector<int64_t>& index, const Tensor& y) {
    const int64_t row = x.dim(0) ? x.numel() / x.dim(0) : 0, m = static_cast<int64_t>(index.size());
    if (m == 0 || row == 0) return;
    const int dev = dev_of(x);
    int64_t* idx = device_index(index, dev);
    gather_rows_k<<<blocks_for(m * row), kThreads, 0, st(x)>>>(x.data(), idx, y.data(), m, row);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, idx, index.size() * sizeof(int64_t));
}

void scatter_add_rows(const Tensor& dy, const std::vector<int64_t>& index, const Tensor& dx) {
    const int64_t row = dx.dim(0) ? dx.numel() / dx.dim(0) : 0, m = static_cast<int64_t>(index.size());
    if (m == 0 || row == 0) return;
    const int dev = dev_of(dx);
    int64_t* idx = device_index(index, dev);
    scatter_add_rows_k<<<blocks_for(m * row), kThreads, 0, st(dx)>>>(dy.data(), idx, dx.data(), m, row);
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, idx, index.size() * sizeof(int64_t));
}

void sum_all(const Tensor& x, const Tensor& y) {
    const int64_t n = x.numel();
    const int dev = dev_of(x);
    const int blocks = static_cast<int>(std::min<int64_t>(1024, std::max<int64_t>(1, (n + kThreads - 1) / kThreads)));
    auto* partial = static_cast<double*>(alloc(dev, blocks * sizeof(double)));
    partial_sums_k<<<blocks, kThreads, 0, st(x)>>>(x.data(), n, partial);
    FSAD_CUDA_LAUNCH_CHECK();
    finish_sum_k<<<1, 1024, 0, st(x)>>>(partial, blocks, y.data());
    FSAD_CUDA_LAUNCH_CHECK();
    release(dev, partial, blocks * sizeof(double));
}

void sum_dim(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& y) {
    if (outer * inner == 0) return;
    sum_dim_k<<<blocks_for(outer * inner), kThreads, 0, st(x)>>>(x.data(), y.data(), outer, n, inner);
    FSAD_CUDA_LAUNCH_CHECK();
}

void sum_dim_backward(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, const Tensor& dx) {
    if (outer * n * inner == 0) return;
    sum_dim_backward_k<<<blocks_for(outer * n * inner), kThreads, 0, st(dy)>>>(dy.data(), dx.data(), outer, n, inner);
    FSAD_CUDA_LAUNCH_CHECK();
}

void l2_normalize_forward(const Tensor& x, float eps, const Tensor& y) {
    if (x.dim(0) == 0) return;
    l2_normalize_k<<<static_cast<unsigned>(x.dim(0)), kThreads, 0, st(x)>>>(x.data(), y.data(), x.dim(1), eps);
    FSAD_CUDA_LAUNCH_CHECK();
}
void l2_normalize_backward(const Tensor& x, const Tensor& dy, float eps, const Tensor& dx) {
    if (x.dim(0) == 0) return;
    l2_normalize_backward_k<<<static_cast<unsigned>(x.dim(0)), kThreads, 0, st(x)>>>(x.data(), dy.data(), dx.data(), x.dim(1), eps);
    FSAD_CUDA_LAUNCH_CHECK();
}
void cosine_similarity_forward(const Tensor& a, const Tensor& b, float eps, const Tensor& c) {
    if (a.dim(0) == 0) return;
    cosine_k<<<static_cast<unsigned>(a.dim(0)), kThreads, 0, st(a)>>>(a.data(), b.data(), c.data(), a.dim(1), eps);
    FSAD_CUDA_LAUNCH_CHECK();
}
void cosine_similarity_backward(const Tensor& a, const Tensor& b, const Tensor& dc, float eps, const Tensor* da,
                                const Tensor* db) {
    if (a.dim(0) == 0) return;
    cosine_backward_k<<<static_cast<unsigned>(a.dim(0)), kThreads, 0, st(a)>>>(
        a.data(), b.data(), dc.data(), da ? da->data() : nullptr, db ? db->data() : nullptr, a.dim(1), eps);
    FSAD_CUDA_LAUNCH_CHECK();
}

}  // namespace fsad::cuda
