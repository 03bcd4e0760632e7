#include "fsad/method/density.hpp"

#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "fsad/core/error.hpp"
#if FSAD_WITH_CUDA
#include "../cuda/kernels.hpp"
#endif

extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
extern "C" void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda, int* info);

namespace fsad::method {
namespace {

std::vector<double> rows_as_double(const Tensor& f, bool l2, const char* what) {
    FSAD_CHECK(f.defined() && f.ndim() == 2, what, ": features must be [n, d], got ",
               f.defined() ? f.shape().str() : std::string("undefined"));
    const Tensor h = f.device().is_cpu() ? f : f.to(Device::cpu());
    const int64_t n = h.dim(0), d = h.dim(1);
    std::vector<double> X(static_cast<size_t>(n * d));
    for (int64_t i = 0; i < n; ++i) {
        double nrm = 0;
        for (int64_t k = 0; k < d; ++k) {
            const double v = h.data()[i * d + k];
            FSAD_CHECK(std::isfinite(v), what, ": feature row ", i, " has a non-finite value");
            X[static_cast<size_t>(i * d + k)] = v;
            nrm += v * v;
        }
        if (l2) {
            nrm = std::max(std::sqrt(nrm), 1e-12);  // as F.normalize
            for (int64_t k = 0; k < d; ++k) X[static_cast<size_t>(i * d + k)] /= nrm;
        }
    }
    return X;
}

}  // namespace

double ledoit_wolf_shrinkage(const std::vector<double>& X0, int64_t n, int64_t d) {
    if (d == 1 || n <= 1) return 0.0;
    // centre
    std::vector<double> X = X0, mean(static_cast<size_t>(d), 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < d; ++k) mean[static_cast<size_t>(k)] += X[static_cast<size_t>(i * d + k)];
    for (auto& m : mean) m /= static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < d; ++k) X[static_cast<size_t>(i * d + k)] -= mean[static_cast<size_t>(k)];
    // scikit-learn's formulas (covariance/_shrunk_covariance.py), with X2 = X**2:
    //   emp_cov_trace = sum(X2, 0)/n, mu = sum(emp_cov_trace)/d
    //   beta_ = sum(X2^T X2), delta_ = sum((X^T X)^2)/n^2
    //   beta = (beta_/n - delta_)/(d n), delta = (delta_ - 2 mu sum(emp_cov_trace) + d mu^2)/d
    //   shrinkage = min(beta, delta)/delta
    std::vector<double> X2(X.size());
    for (size_t i = 0; i < X.size(); ++i) X2[i] = X[i] * X[i];
    double trace = 0;
    for (double v : X2) trace += v;
    const double emp_trace = trace / static_cast<double>(n);  // sum of emp_cov_trace
    // sum of the entries of X2^T X2 = sum_i (sum_a X2[i,a])^2; sum((X^T X)^2) = sum((X X^T)^2),
    // the n x n Gram being much smaller than d x d.
    double beta_ = 0, delta_ = 0;
    for (int64_t i = 0; i < n; ++i) {
        double r = 0;
        for (int64_t a = 0; a < d; ++a) r += X2[static_cast<size_t>(i * d + a)];
        beta_ += r * r;
    }
    std::vector<double> H(static_cast<size_t>(n * n));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(n), static_cast<int>(d),
                1.0, X.data(), static_cast<int>(d), X.data(), static_cast<int>(d), 0.0, H.data(), static_cast<int>(n));
    for (double h : H) delta_ += h * h;
    const double nn = static_cast<double>(n);
    return ledoit_wolf_from_moments(emp_trace, delta_ / (nn * nn), beta_, n, d);
}

double ledoit_wolf_from_moments(double trace, double frobenius, double row_power, int64_t n, int64_t d) {
    if (d == 1 || n <= 1) return 0.0;
    const double nn = static_cast<double>(n), dd = static_cast<double>(d), mu = trace / dd;
    const double beta = (row_power / nn - frobenius) / (dd * nn);
    const double delta = (frobenius - 2.0 * mu * trace + dd * mu * mu) / dd;
    const double b = std::min(beta, delta);
    return b == 0.0 ? 0.0 : b / delta;
}

namespace {
// OpenBLAS runs single-threaded inside fsad (src/cpu/gemm.hpp); the density's double-precision
// BLAS/LAPACK calls run outside any parallel region and may use all threads for their duration.
struct BlasThreads {
    explicit BlasThreads(int n) { openblas_set_num_threads(n); }
    ~BlasThreads() { openblas_set_num_threads(1); }
};

// Lower Cholesky factor (row-major) of the SPD matrix A [d, d] (lower triangle used), in place;
// returns LAPACK's info (0 on success).
int cholesky_lower(std::vector<double>& A, int64_t d) {
    const int dn = static_cast<int>(d);
    int info = 0;
    dpotrf_("U", &dn, A.data(), &dn, &info);  // row-major lower == column-major upper
    for (int64_t i = 0; i < d; ++i)
        for (int64_t j = i + 1; j < d; ++j) A[static_cast<size_t>(i * d + j)] = 0.0;
    return info;
}

// L^-1 of a lower-triangular row-major L [d, d] with a positive diagonal (LAPACK dtrtri).
std::vector<double> invert_lower(const std::vector<double>& L, int64_t d) {
    std::vector<double> inv = L;
    const int dn = static_cast<int>(d);
    int info = 0;
    dtrtri_("U", "N", &dn, inv.data(), &dn, &info);  // row-major lower == column-major upper
    if (info != 0) throw Error("GaussianDensity: the Cholesky factor is singular (LAPACK dtrtri info " + std::to_string(info) + ")");
    return inv;
}
}  // namespace

void GaussianDensity::fit(const Tensor& features, const GaussianOptions& opt) {
#if FSAD_WITH_CUDA
    if (features.defined() && features.is_cuda()) {  // cuBLAS + cuSOLVER, double precision
        FSAD_CHECK(features.ndim() == 2 && features.dim(0) >= 1 && features.dim(1) >= 1,
                   "GaussianDensity::fit: features must be [n, d] with n, d >= 1, got ", features.shape().str());
        FSAD_CHECK(opt.ridge >= 0, "GaussianDensity::fit: ridge must be >= 0, got ", opt.ridge);
        cuda::DensityFitResult r =
            cuda::density_fit(features, opt.l2_normalize, opt.shrinkage == Shrinkage::LedoitWolf, opt.ridge);
        if (r.info != 0)
            throw Error("GaussianDensity::fit: the covariance of " + std::to_string(features.dim(0)) + " samples in " +
                        std::to_string(features.dim(1)) + " dimensions is not positive definite (cuSOLVER potrf info " +
                        std::to_string(r.info) + "); use more shots/augmentations or Shrinkage::Ridge with a ridge > 0");
        opt_ = opt;
        dim_ = features.dim(1);
        shrinkage_ = r.shrinkage;
        mu_ = std::move(r.mu);
        L_ = std::move(r.L);
        derived_ = std::make_shared<Derived>();
        low_rank_ = 0;  // the GPU scores through the full factor
        Xc_.clear();
        Lk_.clear();
        return;
    }
#endif
    std::vector<double> X = rows_as_double(features, opt.l2_normalize, "GaussianDensity::fit");
    const int64_t n = features.dim(0), d = features.dim(1);
    FSAD_CHECK(n >= 1 && d >= 1, "GaussianDensity::fit: need at least one sample of dimension >= 1, got ",
               features.shape().str());
    FSAD_CHECK(opt.ridge >= 0, "GaussianDensity::fit: ridge must be >= 0, got ", opt.ridge);
    std::vector<double> mu(static_cast<size_t>(d), 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < d; ++k) mu[static_cast<size_t>(k)] += X[static_cast<size_t>(i * d + k)];
    for (auto& m : mu) m /= static_cast<double>(n);
    std::vector<double> Xc(X.size());
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < d; ++k)
            Xc[static_cast<size_t>(i * d + k)] = X[static_cast<size_t>(i * d + k)] - mu[static_cast<size_t>(k)];
    BlasThreads threads(omp_get_max_threads());
    // S = Xc^T Xc / n (maximum likelihood), lower triangle
    std::vector<double> S(static_cast<size_t>(d * d), 0.0);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, static_cast<int>(d), static_cast<int>(n), 1.0 / static_cast<double>(n),
                Xc.data(), static_cast<int>(d), 0.0, S.data(), static_cast<int>(d));
    double tr = 0;
    for (int64_t k = 0; k < d; ++k) tr += S[static_cast<size_t>(k * d + k)];
    const double target = tr / static_cast<double>(d);
    double s = 0, alpha, beta;  // Sigma = alpha I + beta Xc^T Xc
    if (opt.shrinkage == Shrinkage::LedoitWolf) {
        // scikit-learn's ledoit_wolf_shrinkage (ledoit_wolf_from_moments), with
        // sum((X^T X)^2)/n^2 = |S|_F^2 taken from S instead of a second product
        double fro = 0;
        for (int64_t i = 0; i < d; ++i)
            for (int64_t j = 0; j <= i; ++j) {
                const double v = S[static_cast<size_t>(i * d + j)];
                fro += (i == j ? 1.0 : 2.0) * v * v;
            }
        double beta_ = 0;
        for (int64_t i = 0; i < n; ++i) {
            double r = 0;
            for (int64_t a = 0; a < d; ++a) r += Xc[static_cast<size_t>(i * d + a)] * Xc[static_cast<size_t>(i * d + a)];
            beta_ += r * r;
        }
        s = ledoit_wolf_from_moments(tr, fro, beta_, n, d);
        for (int64_t i = 0; i < d; ++i)
            for (int64_t j = 0; j <= i; ++j) S[static_cast<size_t>(i * d + j)] *= (1.0 - s);
        for (int64_t k = 0; k < d; ++k) S[static_cast<size_t>(k * d + k)] += s * target;
        alpha = s * target;
        beta = (1.0 - s) / static_cast<double>(n);
    } else {
        for (int64_t k = 0; k < d; ++k) S[static_cast<size_t>(k * d + k)] += opt.ridge;
        alpha = opt.ridge;
        beta = 1.0 / static_cast<double>(n);
    }
    const int info = cholesky_lower(S, d);
    if (info != 0)
        throw Error("GaussianDensity::fit: the covariance of " + std::to_string(n) + " samples in " +
                    std::to_string(d) + " dimensions is not positive definite (LAPACK dpotrf info " +
                    std::to_string(info) +
                    "); with identical samples or too few of them use more shots/augmentations or "
                    "Shrinkage::Ridge with a ridge > 0");
    opt_ = opt;
    dim_ = d;
    shrinkage_ = s;
    mu_ = std::move(mu);
    L_ = std::move(S);
    // Few samples (n < d/2): Sigma = alpha I + beta Xc^T Xc has a cheaper inverse (Woodbury):
    //   Sigma^-1 = (I - Xc^T K^-1 Xc) / alpha,  K = (alpha/beta) I_n + Xc Xc^T,
    //   d(z)^2 = (|w|^2 - |Lk^-1 Xc w|^2) / alpha,  w = z - mu, K = Lk Lk^T,
    // O(n d) per scored feature instead of O(d^2).
    low_rank_ = 0;
    if (alpha > 0 && beta > 0 && 2 * n < d) {
        std::vector<double> K(static_cast<size_t>(n * n), 0.0);
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, static_cast<int>(n), static_cast<int>(d), 1.0, Xc.data(),
                    static_cast<int>(d), 0.0, K.data(), static_cast<int>(n));
        for (int64_t i = 0; i < n; ++i) K[static_cast<size_t>(i * n + i)] += alpha / beta;
        if (cholesky_lower(K, n) == 0) {
            low_rank_ = n;
            alpha_ = alpha;
            Xc_ = std::move(Xc);
            Lk_ = std::move(K);
        }
    }
    derived_ = std::make_shared<Derived>();
}

Tensor GaussianDensity::score(const Tensor& features) const {
    FSAD_CHECK(fitted(), "GaussianDensity::score: the density is not fitted");
    FSAD_CHECK(features.defined() && features.ndim() == 2 && features.dim(1) == dim_, "GaussianDensity::score: features ",
               features.defined() ? features.shape().str() : std::string("undefined"), " do not have dimension ", dim_);
#if FSAD_WITH_CUDA
    if (features.is_cuda()) {  // one float32 triangular solve for the batch (cuBLAS)
        Tensor mu, L;              // float32 copies on the features' device, made once per device
        {
            std::lock_guard<std::mutex> lock(derived_->mutex);
            auto& slot = derived_->by_device[features.device().index];
            if (!slot.first.defined()) {
                slot.first = Tensor::from_vector(Shape{dim_}, std::vector<float>(mu_.begin(), mu_.end())).to(features.device());
                slot.second =
                    Tensor::from_vector(Shape{dim_, dim_}, std::vector<float>(L_.begin(), L_.end())).to(features.device());
            }
            mu = slot.first;
            L = slot.second;
        }
        Tensor out = Tensor::empty(Shape{features.dim(0)}, features.device());
        cuda::density_score(features, mu, L, opt_.l2_normalize, out);
        return out;
    }
#endif
    const Tensor h = features.device().is_cpu() ? features : features.to(Device::cpu());
    const int64_t m = h.dim(0), d = dim_, n = low_rank_;
    Tensor out = Tensor::empty(Shape{m});
    const double* Linv = nullptr;  // the inverse factor, made on first use (full-factor scoring only)
    if (!n) {
        Derived& D = *derived_;
        std::call_once(D.once, [&] { D.Linv = invert_lower(L_, d); });
        Linv = D.Linv.data();
    }
    constexpr int64_t kBlock = 256;  // rows per block: double buffers stay in cache, no big allocation
    const int64_t blocks = (m + kBlock - 1) / kBlock;
    int64_t bad_row = -1;
#pragma omp parallel
    {
        std::vector<double> z(static_cast<size_t>(kBlock * d)), v(static_cast<size_t>(kBlock * std::max<int64_t>(n, 1)));
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t r0 = b * kBlock, rows = std::min(kBlock, m - r0);
            bool ok = true;
            for (int64_t i = 0; i < rows && ok; ++i) {
                const float* f = h.data() + (r0 + i) * d;
                double* zi = z.data() + i * d;
                double nrm = 0;
                for (int64_t k = 0; k < d; ++k) {
                    zi[k] = f[k];
                    nrm += zi[k] * zi[k];
                }
                if (!std::isfinite(nrm)) {
#pragma omp critical(fsad_density_bad_row)
                    if (bad_row < 0 || r0 + i < bad_row) bad_row = r0 + i;
                    ok = false;
                    break;
                }
                const double scale = opt_.l2_normalize ? 1.0 / std::max(std::sqrt(nrm), 1e-12) : 1.0;
                for (int64_t k = 0; k < d; ++k) zi[k] = zi[k] * scale - mu_[static_cast<size_t>(k)];
            }
            if (!ok) continue;
            if (n) {
                // V = W Xc^T, then U = V Lk^-T (rows u = Lk^-1 v); d^2 = (|w|^2 - |u|^2) / alpha
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(n),
                            static_cast<int>(d), 1.0, z.data(), static_cast<int>(d), Xc_.data(), static_cast<int>(d), 0.0,
                            v.data(), static_cast<int>(n));
                cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, static_cast<int>(rows),
                            static_cast<int>(n), 1.0, Lk_.data(), static_cast<int>(n), v.data(), static_cast<int>(n));
                for (int64_t i = 0; i < rows; ++i) {
                    double w2 = 0, u2 = 0;
                    for (int64_t k = 0; k < d; ++k) w2 += z[static_cast<size_t>(i * d + k)] * z[static_cast<size_t>(i * d + k)];
                    for (int64_t k = 0; k < n; ++k) u2 += v[static_cast<size_t>(i * n + k)] * v[static_cast<size_t>(i * n + k)];
                    out.data()[r0 + i] = static_cast<float>(std::sqrt(std::max(0.0, (w2 - u2) / alpha_)));
                }
            } else {
                // rows z_i -> y_i = L^-1 z_i, i.e. Y = Z L^-T: a triangular multiply by the inverse
                // factor (about twice as fast as the triangular solve)
                cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, static_cast<int>(rows),
                            static_cast<int>(d), 1.0, Linv, static_cast<int>(d), z.data(), static_cast<int>(d));
                for (int64_t i = 0; i < rows; ++i) {
                    double s2 = 0;
                    for (int64_t k = 0; k < d; ++k) s2 += z[static_cast<size_t>(i * d + k)] * z[static_cast<size_t>(i * d + k)];
                    out.data()[r0 + i] = static_cast<float>(std::sqrt(s2));
                }
            }
        }
    }
    if (bad_row >= 0) throw Error("GaussianDensity::score: feature row " + std::to_string(bad_row) + " has a non-finite value");
    return out;
}

Tensor GaussianDensity::mean() const {
    Tensor t = Tensor::empty(Shape{dim_});
    for (int64_t k = 0; k < dim_; ++k) t.data()[k] = static_cast<float>(mu_[static_cast<size_t>(k)]);
    return t;
}

Tensor GaussianDensity::cholesky() const {
    Tensor t = Tensor::empty(Shape{dim_, dim_});
    for (size_t k = 0; k < L_.size(); ++k) t.data()[k] = static_cast<float>(L_[k]);
    return t;
}

void GaussianDensity::set(const Tensor& mean, const Tensor& chol, const GaussianOptions& opt) {
    FSAD_CHECK(mean.defined() && mean.ndim() == 1 && chol.defined() && chol.shape() == Shape({mean.dim(0), mean.dim(0)}),
               "GaussianDensity::set: mean [d] and cholesky [d, d] expected");
    const int64_t d = mean.dim(0);
    std::vector<float> m = mean.to_vector(), l = chol.to_vector();
    for (int64_t i = 0; i < d; ++i) {
        FSAD_CHECK(std::isfinite(l[static_cast<size_t>(i * d + i)]) && l[static_cast<size_t>(i * d + i)] > 0,
                   "GaussianDensity::set: the Cholesky factor has a non-positive diagonal at ", i);
        for (int64_t j = i + 1; j < d; ++j)
            FSAD_CHECK(l[static_cast<size_t>(i * d + j)] == 0.0f, "GaussianDensity::set: the factor is not lower triangular");
    }
    mu_.assign(m.begin(), m.end());
    L_.assign(l.begin(), l.end());
    derived_ = std::make_shared<Derived>();
    dim_ = d;
    opt_ = opt;
    low_rank_ = 0;  // a restored density scores through the full factor
    Xc_.clear();
    Lk_.clear();
}

}  // namespace fsad::method
