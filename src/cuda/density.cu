// The Gaussian density on the GPU (ops::density_fit, density_score; include/fsad/method/density.hpp
// states the method): fit in double with cuBLAS (Dsyrk for the covariance) and cuSOLVER (Dpotrf
// for the Cholesky factor), the Ledoit-Wolf statistics reduced on the device in a fixed order (a
// fit is the same run to run; math::ledoit_wolf_from_moments makes the shrinkage of them);
// scoring in float32 with one triangular solve (Strsm) for a whole batch of features, as the
// model file stores the factor in float32. The kernels and their launches are in density.cuh.
#include <climits>
#include <cmath>
#include <mutex>

#include "common.cuh"
#include "density.cuh"
#include "kernels.hpp"

namespace fsad::cuda {
namespace {

int first_bad_row(const Scratch<int>& bad, cudaStream_t s) {
    int h = INT_MAX;
    FSAD_CUDA_CHECK(cudaMemcpyAsync(&h, bad.p, sizeof(int), cudaMemcpyDeviceToHost, s));
    FSAD_CUDA_CHECK(cudaStreamSynchronize(s));
    return h;
}

void init_bad(const Scratch<int>& bad, cudaStream_t s) {
    const int big = INT_MAX;
    FSAD_CUDA_CHECK(cudaMemcpyAsync(bad.p, &big, sizeof(int), cudaMemcpyHostToDevice, s));
}

}  // namespace

void density_fit(const Tensor& f, const DensityFitOptions& o, DensityFit& r) {
    const int dev = f.device().index;
    Context& c = context(dev);
    StreamLaunch launch{c.stream};
    const int64_t n = f.dim(0), d = f.dim(1);
    const auto nd = static_cast<size_t>(n * d), dd = static_cast<size_t>(d * d);
    Scratch<double> x(dev, nd), mu(dev, static_cast<size_t>(d)), S(dev, dd), acc(dev, 3);
    Scratch<int> bad(dev, 1);
    init_bad(bad, c.stream);
    density::rows_to_double(launch, f.data(), x.p, n, d, o.l2_normalize, bad.p);
    const int bad_row = first_bad_row(bad, c.stream);
    if (bad_row != INT_MAX)
        throw Error("density_fit: feature row " + std::to_string(bad_row) + " has a non-finite value");
    density::centre(launch, x.p, mu.p, n, d);
    // S = Xc^T Xc / n: row-major Xc [n,d] is the column-major [d,n] matrix A, S = A A^T / n
    const double inv_n = 1.0 / static_cast<double>(n), zero = 0.0;
    FSAD_CUBLAS_CHECK(cublas_api().cublasDsyrk(c.cublas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, static_cast<int>(d), static_cast<int>(n),
                                  &inv_n, x.p, static_cast<int>(d), &zero, S.p, static_cast<int>(d)));
    Scratch<double> moments_scratch(dev, density::moments_scratch(n, d));
    density::moments(launch, S.p, x.p, n, d, acc.p, moments_scratch.p);
    double h[3];
    FSAD_CUDA_CHECK(cudaMemcpyAsync(h, acc.p, sizeof h, cudaMemcpyDeviceToHost, c.stream));
    FSAD_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    const double tr = h[0], fro = h[1], beta_ = h[2], target = tr / static_cast<double>(d);
    double s = 0.0, scale = 1.0, diag = o.ridge;
    if (o.ledoit_wolf) {  // scikit-learn's ledoit_wolf_shrinkage, as the CPU path
        s = math::ledoit_wolf_from_moments(tr, fro, beta_, n, d);
        scale = 1.0 - s;
        diag = s * target;
    }
    density::shrink(launch, S.p, d, scale, diag);
    int lwork = 0;
    FSAD_CUSOLVER_CHECK(cusolver_api().cusolverDnDpotrf_bufferSize(c.cusolver, CUBLAS_FILL_MODE_LOWER, static_cast<int>(d), S.p,
                                                    static_cast<int>(d), &lwork));
    Scratch<double> work(dev, static_cast<size_t>(std::max(lwork, 1)));
    Scratch<int> info(dev, 1);
    FSAD_CUSOLVER_CHECK(cusolver_api().cusolverDnDpotrf(c.cusolver, CUBLAS_FILL_MODE_LOWER, static_cast<int>(d), S.p, static_cast<int>(d),
                                         work.p, lwork, info.p));
    int hinfo = 0;
    FSAD_CUDA_CHECK(cudaMemcpyAsync(&hinfo, info.p, sizeof(int), cudaMemcpyDeviceToHost, c.stream));
    r = DensityFit{};
    r.mu.resize(static_cast<size_t>(d));
    std::vector<double> colmajor(dd);
    FSAD_CUDA_CHECK(cudaMemcpyAsync(r.mu.data(), mu.p, r.mu.size() * sizeof(double), cudaMemcpyDeviceToHost, c.stream));
    FSAD_CUDA_CHECK(cudaMemcpyAsync(colmajor.data(), S.p, dd * sizeof(double), cudaMemcpyDeviceToHost, c.stream));
    FSAD_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    r.info = hinfo;
    r.shrinkage = s;
    r.L.assign(dd, 0.0);  // row-major lower: L[i][j] = S(i, j), i >= j
    for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j <= i; ++j) r.L[static_cast<size_t>(i * d + j)] = colmajor[static_cast<size_t>(i + j * d)];
}

void density_score(const Tensor& f, const DensityFit& g, DensityCache& cache, bool l2, const Tensor& out) {
    const int dev = f.device().index;
    const int64_t m = f.dim(0), d = f.dim(1);
    if (m == 0) return;
    Tensor mu, L;  // float32 copies on this device (the model file's precision), made once per device
    {
        std::lock_guard<std::mutex> lock(cache.mutex);
        auto& slot = cache.by_device[dev];
        if (!slot.first.defined()) {
            slot.first = Tensor::from_vector(Shape{d}, std::vector<float>(g.mu.begin(), g.mu.end())).to(f.device());
            slot.second = Tensor::from_vector(Shape{d, d}, std::vector<float>(g.L.begin(), g.L.end())).to(f.device());
        }
        mu = slot.first;
        L = slot.second;
    }
    Context& c = context(dev);
    StreamLaunch launch{c.stream};
    Scratch<float> z(dev, static_cast<size_t>(m * d));
    Scratch<int> bad(dev, 1);
    init_bad(bad, c.stream);
    density::centre_rows(launch, f.data(), mu.data(), z.p, m, d, l2, bad.p);
    // row-major lower L is the column-major upper U = L^T; solve L Y = Z, i.e. U^T Y = Z
    const float one = 1.0f;
    FSAD_CUBLAS_CHECK(cublas_api().cublasStrsm(c.cublas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT,
                                  static_cast<int>(d), static_cast<int>(m), &one, L.data(), static_cast<int>(d), z.p,
                                  static_cast<int>(d)));
    density::row_norms(launch, z.p, out.data(), m, d);
    const int bad_row = first_bad_row(bad, c.stream);
    if (bad_row != INT_MAX)
        throw Error("density_score: feature row " + std::to_string(bad_row) + " has a non-finite value");
}

}  // namespace fsad::cuda
