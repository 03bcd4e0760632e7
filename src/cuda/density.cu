// The Gaussian density on the GPU (src/method/density.cpp states the method): fit in double with
// cuBLAS (Dsyrk for the covariance) and cuSOLVER (Dpotrf for the Cholesky factor), the
// Ledoit-Wolf statistics reduced on the device; scoring in float32 with one triangular solve
// (Strsm) for a whole batch of features, as the model file stores the factor in float32.
#include <climits>
#include <cmath>

#include "common.cuh"
#include "fsad/method/density.hpp"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

// The factor that L2-normalises row r of f [n,d] (1 without l2), the same in every thread of
// the block (one block per row); a row with a non-finite value is recorded in *bad (the first).
__device__ double row_scale(const float* f, int64_t r, int64_t d, bool l2, int* bad) {
    double s = 0.0;
    bool finite = true;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) {
        const double v = f[r * d + k];
        finite &= isfinite(v);
        s += v * v;
    }
    if (!finite) atomicMin(bad, static_cast<int>(r));
    __shared__ double scale;
    s = block_sum(s);
    if (threadIdx.x == 0) scale = l2 ? 1.0 / fmax(sqrt(s), 1e-12) : 1.0;
    __syncthreads();
    return scale;
}

// rows of f [n,d] -> double, optionally L2-normalised
__global__ void rows_to_double_k(const float* f, double* x, int64_t d, bool l2, int* bad) {
    const int64_t r = blockIdx.x;
    const double scale = row_scale(f, r, d, l2, bad);
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) x[r * d + k] = f[r * d + k] * scale;
}

__global__ void column_mean_k(const double* x, double* mu, int64_t n, int64_t d) {
    FSAD_GRID_LOOP(k, d) {
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) s += x[i * d + k];
        mu[k] = s / static_cast<double>(n);
    }
}

__global__ void centre_k(double* x, const double* mu, int64_t n, int64_t d) {
    FSAD_GRID_LOOP(i, n * d) x[i] -= mu[i % d];
}

// acc[0] += trace(S), acc[1] += |S|_F^2 from the lower triangle of column-major S
__global__ void cov_stats_k(const double* S, int64_t d, double* acc) {
    double tr = 0.0, fro = 0.0;
    FSAD_GRID_LOOP(idx, d * d) {
        const int64_t i = idx % d, j = idx / d;  // row i, column j
        if (i < j) continue;
        const double v = S[idx];
        fro += (i == j ? 1.0 : 2.0) * v * v;
        if (i == j) tr += v;
    }
    tr = block_sum(tr);
    if (threadIdx.x == 0) atomicAdd(acc, tr);
    fro = block_sum(fro);
    if (threadIdx.x == 0) atomicAdd(acc + 1, fro);
}

// acc[2] += sum_i |xc_i|^4 (one block per row)
__global__ void row_norm4_k(const double* xc, int64_t d, double* acc) {
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) s += xc[blockIdx.x * d + k] * xc[blockIdx.x * d + k];
    s = block_sum(s);
    if (threadIdx.x == 0) atomicAdd(acc + 2, s * s);
}

__global__ void shrink_k(double* S, int64_t d, double scale, double diag) {
    FSAD_GRID_LOOP(idx, d * d) {
        const int64_t i = idx % d, j = idx / d;
        if (i < j) continue;
        S[idx] = S[idx] * scale + (i == j ? diag : 0.0);
    }
}

// z_j = normalise(f_j) - mu as column j of a column-major [d, m] matrix (= row-major [m, d])
__global__ void centre_rows_k(const float* f, const float* mu, float* z, int64_t d, bool l2, int* bad) {
    const int64_t r = blockIdx.x;
    const float scale = static_cast<float>(row_scale(f, r, d, l2, bad));
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) z[r * d + k] = f[r * d + k] * scale - mu[k];
}

__global__ void column_norm_k(const float* y, float* out, int64_t d) {
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) s += static_cast<double>(y[blockIdx.x * d + k]) * y[blockIdx.x * d + k];
    s = block_sum(s);
    if (threadIdx.x == 0) out[blockIdx.x] = static_cast<float>(sqrt(s));
}

// scratch owned for the duration of a call (returned to the caching allocator)
struct Scratch {
    int dev;
    void* p;
    size_t bytes;
    Scratch(int d, size_t b) : dev(d), p(alloc(d, b)), bytes(b) {}
    ~Scratch() { release(dev, p, bytes); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <class T>
    T* as() const {
        return static_cast<T*>(p);
    }
};

int first_bad_row(const Scratch& bad, cudaStream_t s) {
    int h = INT_MAX;
    FSAD_CUDA_CHECK(cudaMemcpyAsync(&h, bad.p, sizeof(int), cudaMemcpyDeviceToHost, s));
    FSAD_CUDA_CHECK(cudaStreamSynchronize(s));
    return h;
}

void init_bad(const Scratch& bad, cudaStream_t s) {
    const int big = INT_MAX;
    FSAD_CUDA_CHECK(cudaMemcpyAsync(bad.p, &big, sizeof(int), cudaMemcpyHostToDevice, s));
}

}  // namespace

DensityFitResult density_fit(const Tensor& f, bool l2, bool ledoit_wolf, double ridge) {
    const int dev = f.device().index;
    Context& c = context(dev);
    const int64_t n = f.dim(0), d = f.dim(1);
    Scratch x(dev, static_cast<size_t>(n * d) * sizeof(double)), mu(dev, static_cast<size_t>(d) * sizeof(double));
    Scratch S(dev, static_cast<size_t>(d * d) * sizeof(double)), acc(dev, 3 * sizeof(double)), bad(dev, sizeof(int));
    init_bad(bad, c.stream);
    rows_to_double_k<<<static_cast<unsigned>(n), kThreads, 0, c.stream>>>(f.data(), x.as<double>(), d, l2, bad.as<int>());
    FSAD_CUDA_LAUNCH_CHECK();
    const int bad_row = first_bad_row(bad, c.stream);
    if (bad_row != INT_MAX)
        throw Error("GaussianDensity::fit: feature row " + std::to_string(bad_row) + " has a non-finite value");
    column_mean_k<<<blocks_for(d), kThreads, 0, c.stream>>>(x.as<double>(), mu.as<double>(), n, d);
    FSAD_CUDA_LAUNCH_CHECK();
    centre_k<<<blocks_for(n * d), kThreads, 0, c.stream>>>(x.as<double>(), mu.as<double>(), n, d);
    FSAD_CUDA_LAUNCH_CHECK();
    // S = Xc^T Xc / n: row-major Xc [n,d] is the column-major [d,n] matrix A, S = A A^T / n
    const double inv_n = 1.0 / static_cast<double>(n), zero = 0.0;
    FSAD_CUBLAS_CHECK(cublasDsyrk(c.cublas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, static_cast<int>(d), static_cast<int>(n),
                                  &inv_n, x.as<double>(), static_cast<int>(d), &zero, S.as<double>(), static_cast<int>(d)));
    FSAD_CUDA_CHECK(cudaMemsetAsync(acc.p, 0, 3 * sizeof(double), c.stream));
    cov_stats_k<<<std::min<unsigned>(blocks_for(d * d), 1024), kThreads, 0, c.stream>>>(S.as<double>(), d, acc.as<double>());
    FSAD_CUDA_LAUNCH_CHECK();
    row_norm4_k<<<static_cast<unsigned>(n), kThreads, 0, c.stream>>>(x.as<double>(), d, acc.as<double>());
    FSAD_CUDA_LAUNCH_CHECK();
    double h[3];
    FSAD_CUDA_CHECK(cudaMemcpyAsync(h, acc.p, sizeof h, cudaMemcpyDeviceToHost, c.stream));
    FSAD_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    const double tr = h[0], fro = h[1], beta_ = h[2], target = tr / static_cast<double>(d);
    double s = 0.0, scale = 1.0, diag = ridge;
    if (ledoit_wolf) {  // scikit-learn's ledoit_wolf_shrinkage, as the CPU path
        s = method::ledoit_wolf_from_moments(tr, fro, beta_, n, d);
        scale = 1.0 - s;
        diag = s * target;
    }
    shrink_k<<<blocks_for(d * d), kThreads, 0, c.stream>>>(S.as<double>(), d, scale, diag);
    FSAD_CUDA_LAUNCH_CHECK();
    int lwork = 0;
    FSAD_CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(c.cusolver, CUBLAS_FILL_MODE_LOWER, static_cast<int>(d), S.as<double>(),
                                                    static_cast<int>(d), &lwork));
    Scratch work(dev, static_cast<size_t>(std::max(lwork, 1)) * sizeof(double)), info(dev, sizeof(int));
    FSAD_CUSOLVER_CHECK(cusolverDnDpotrf(c.cusolver, CUBLAS_FILL_MODE_LOWER, static_cast<int>(d), S.as<double>(),
                                         static_cast<int>(d), work.as<double>(), lwork, info.as<int>()));
    int hinfo = 0;
    FSAD_CUDA_CHECK(cudaMemcpyAsync(&hinfo, info.p, sizeof(int), cudaMemcpyDeviceToHost, c.stream));
    DensityFitResult r;
    r.mu.resize(static_cast<size_t>(d));
    std::vector<double> colmajor(static_cast<size_t>(d * d));
    FSAD_CUDA_CHECK(cudaMemcpyAsync(r.mu.data(), mu.p, r.mu.size() * sizeof(double), cudaMemcpyDeviceToHost, c.stream));
    FSAD_CUDA_CHECK(cudaMemcpyAsync(colmajor.data(), S.p, colmajor.size() * sizeof(double), cudaMemcpyDeviceToHost, c.stream));
    FSAD_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    r.info = hinfo;
    r.shrinkage = s;
    r.L.assign(static_cast<size_t>(d * d), 0.0);  // row-major lower: L[i][j] = S(i, j), i >= j
    for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j <= i; ++j) r.L[static_cast<size_t>(i * d + j)] = colmajor[static_cast<size_t>(i + j * d)];
    return r;
}

void density_score(const Tensor& f, const Tensor& mu, const Tensor& L, bool l2, const Tensor& out) {
    const int dev = f.device().index;
    Context& c = context(dev);
    const int64_t m = f.dim(0), d = f.dim(1);
    if (m == 0) return;
    Scratch z(dev, static_cast<size_t>(m * d) * sizeof(float)), bad(dev, sizeof(int));
    init_bad(bad, c.stream);
    centre_rows_k<<<static_cast<unsigned>(m), kThreads, 0, c.stream>>>(f.data(), mu.data(), z.as<float>(), d, l2,
                                                                         bad.as<int>());
    FSAD_CUDA_LAUNCH_CHECK();
    // row-major lower L is the column-major upper U = L^T; solve L Y = Z, i.e. U^T Y = Z
    const float one = 1.0f;
    FSAD_CUBLAS_CHECK(cublasStrsm(c.cublas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT,
                                  static_cast<int>(d), static_cast<int>(m), &one, L.data(), static_cast<int>(d),
                                  z.as<float>(), static_cast<int>(d)));
    column_norm_k<<<static_cast<unsigned>(m), kThreads, 0, c.stream>>>(z.as<float>(), out.data(), d);
    FSAD_CUDA_LAUNCH_CHECK();
    const int bad_row = first_bad_row(bad, c.stream);
    if (bad_row != INT_MAX)
        throw Error("GaussianDensity::score: feature row " + std::to_string(bad_row) + " has a non-finite value");
}

}  // namespace fsad::cuda
