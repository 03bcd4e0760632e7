// Element-wise, row-wise and reduction ops on the GPU (kernels and launches in elementwise.cuh,
// run by the CPU tests on the SIMT emulator too), and the linear layer through cuBLAS.
#include "common.cuh"
#include "elementwise.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

int dev_of(const Tensor& t) { return t.device().index; }
cudaStream_t st(const Tensor& t) { return context(dev_of(t)).stream; }
StreamLaunch launcher(const Tensor& t) { return {st(t)}; }

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
    auto launch = launcher(t);
    ew::fill(launch, t.data(), n, v);
}

void activation_forward(const Tensor& x, math::Activation a, const Tensor& y) {
    auto launch = launcher(x);
    ew::activation(launch, x.data(), y.data(), x.numel(), a);
}
void activation_backward(const Tensor& y, const Tensor& dy, math::Activation a, const Tensor& dx) {
    auto launch = launcher(y);
    ew::activation_grad(launch, y.data(), dy.data(), dx.data(), y.numel(), a);
}
void axpby(float alpha, const Tensor& a, float beta, const Tensor& b, const Tensor& y) {
    auto launch = launcher(a);
    ew::axpby(launch, alpha, a.data(), beta, b.data(), y.data(), a.numel());
}
void mul(const Tensor& a, const Tensor& b, const Tensor& y) {
    auto launch = launcher(a);
    ew::mul(launch, a.data(), b.data(), y.data(), a.numel());
}
void affine(const Tensor& x, float alpha, float beta, const Tensor& y) {
    auto launch = launcher(x);
    ew::affine(launch, x.data(), alpha, beta, y.data(), x.numel());
}
void to_bf16(int device, const float* src, uint16_t* dst, int64_t n) {
    StreamLaunch launch{context(device).stream};
    ew::to_bf16(launch, src, dst, n);
}
void from_bf16(int device, const uint16_t* src, float* dst, int64_t n) {
    StreamLaunch launch{context(device).stream};
    ew::from_bf16(launch, src, dst, n);
}
void round_bf16(const Tensor& x, const Tensor& y) {
    auto launch = launcher(x);
    ew::round_bf16(launch, x.data(), y.data(), x.numel());
}
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const math::AdamStep& s) {
    auto launch = launcher(param);
    ew::adam(launch, param.data(), grad.data(), m.data(), v.data(), param.numel(), s);
}
void ema_update(const Tensor& target, const Tensor& online, float beta) {
    auto launch = launcher(target);
    ew::ema(launch, target.data(), online.data(), target.numel(), beta);
}

// y[N,out] = x[N,in] W[out,in]^T (+ b). Row-major arrays are column-major transposes, so cuBLAS
// computes y^T = W x^T as gemm(T, N).
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
    const int n = static_cast<int>(x.dim(0)), in = static_cast<int>(x.dim(1)), out = static_cast<int>(w.dim(0));
    Context& c = context(dev_of(x));
    const float one = 1.0f, zero = 0.0f;
    if (n > 0)
        FSAD_CUBLAS_CHECK(cublas_api().cublasSgemm(c.cublas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w.data(), in, x.data(), in, &zero,
                                      y.data(), out));
    if (bias && n > 0) {
        StreamLaunch launch{c.stream};
        ew::add_bias(launch, y.data(), bias->data(), n, out);
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
            FSAD_CUBLAS_CHECK(cublas_api().cublasSgemm(c.cublas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w.data(), in, dy.data(), out,
                                          &zero, dx->data(), in));
    }
    if (dw) {
        if (n > 0)
            FSAD_CUBLAS_CHECK(cublas_api().cublasSgemm(c.cublas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x.data(), in, dy.data(), out,
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
    auto launch = launcher(x);
    ew::gather_rows(launch, x.data(), idx, y.data(), m, row);
    release(dev, idx, index.size() * sizeof(int64_t));
}

void scatter_add_rows(const Tensor& dy, const std::vector<int64_t>& index, const Tensor& dx) {
    const int64_t row = dx.dim(0) ? dx.numel() / dx.dim(0) : 0, m = static_cast<int64_t>(index.size());
    if (m == 0 || row == 0) return;
    const int dev = dev_of(dx);
    int64_t* idx = device_index(index, dev);
    auto launch = launcher(dx);
    ew::scatter_add_rows(launch, dy.data(), idx, dx.data(), m, row);
    release(dev, idx, index.size() * sizeof(int64_t));
}

void sum_all(const Tensor& x, const Tensor& y) {
    const int64_t n = x.numel();
    const int dev = dev_of(x);
    Scratch<double> partial(dev, static_cast<size_t>(ew::sum_all_blocks(n)));
    auto launch = launcher(x);
    ew::sum_all(launch, x.data(), n, y.data(), partial.p);
}

void sum_dim(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& y) {
    if (outer * inner == 0) return;
    auto launch = launcher(x);
    ew::sum_dim(launch, x.data(), y.data(), outer, n, inner);
}

void sum_dim_backward(const Tensor& dy, int64_t outer, int64_t n, int64_t inner, const Tensor& dx) {
    if (outer * n * inner == 0) return;
    auto launch = launcher(dy);
    ew::sum_dim_backward(launch, dy.data(), dx.data(), outer, n, inner);
}

void l2_normalize_forward(const Tensor& x, float eps, const Tensor& y) {
    if (x.dim(0) == 0) return;
    auto launch = launcher(x);
    ew::l2_normalize(launch, x.data(), y.data(), x.dim(0), x.dim(1), eps);
}
void l2_normalize_backward(const Tensor& x, const Tensor& dy, float eps, const Tensor& dx) {
    if (x.dim(0) == 0) return;
    auto launch = launcher(x);
    ew::l2_normalize_backward(launch, x.data(), dy.data(), dx.data(), x.dim(0), x.dim(1), eps);
}
void cosine_similarity_forward(const Tensor& a, const Tensor& b, float eps, const Tensor& c) {
    if (a.dim(0) == 0) return;
    auto launch = launcher(a);
    ew::cosine(launch, a.data(), b.data(), c.data(), a.dim(0), a.dim(1), eps);
}
void cosine_similarity_backward(const Tensor& a, const Tensor& b, const Tensor& dc, float eps, const Tensor* da,
                                const Tensor* db) {
    if (a.dim(0) == 0) return;
    auto launch = launcher(a);
    ew::cosine_backward(launch, a.data(), b.data(), dc.data(), da ? da->data() : nullptr, db ? db->data() : nullptr,
                        a.dim(0), a.dim(1), eps);
}

}  // namespace fsad::cuda
