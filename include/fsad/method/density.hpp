// The Gaussian density of Sec. 3.4: fit mu and a shrunk covariance on (L2-normalised) features
// of normal images, score by the Mahalanobis distance d(z) = sqrt((z - mu)^T Sigma^-1 (z - mu)).
// Sigma^-1 is never formed: Sigma = L L^T (Cholesky), d(z) = |L^-1 (z - mu)|, with the triangular
// L^-1 computed once (LAPACK dtrtri) so that scoring a batch is one triangular multiply. With fewer
// samples than half the dimension (the few-shot case) scoring uses the equivalent low-rank
// (Woodbury) form, O(n d) per feature instead of O(d^2). Fitting and scoring run in double
// precision (d up to 2048 with a few dozen samples is ill-conditioned).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "fsad/core/tensor.hpp"

namespace fsad::method {

enum class Shrinkage {
    LedoitWolf,  ///< scikit-learn's LedoitWolf(assume_centered=False): Sigma = (1-s) S + s tr(S)/d I
    Ridge,       ///< Sigma = S + ridge * I
};

struct GaussianOptions {
    Shrinkage shrinkage = Shrinkage::LedoitWolf;
    double ridge = 1e-2;      ///< for Shrinkage::Ridge
    bool l2_normalize = true; ///< normalise features (fit and score) to unit length first
};

class GaussianDensity {
public:
    GaussianDensity() = default;
    /// requires features [n, d], n >= 1, all finite. On a CUDA device the fit runs there (cuBLAS
    /// Dsyrk, cuSOLVER Dpotrf, double precision) and score() of CUDA features returns a CUDA
    /// tensor (one float32 triangular solve per batch).
    /// ensures mean(), cholesky() set; throws fsad::Error when Sigma is not positive definite.
    void fit(const Tensor& features, const GaussianOptions& opt = {});
    /// Mahalanobis distances of features [m, d] -> [m].
    Tensor score(const Tensor& features) const;

    bool fitted() const { return dim_ > 0; }
    int64_t dim() const { return dim_; }
    const GaussianOptions& options() const { return opt_; }
    /// Shrinkage intensity used (Ledoit-Wolf's estimate; 0 for Ridge).
    double shrinkage() const { return shrinkage_; }
    /// mu [d] and the lower Cholesky factor L [d, d] of Sigma, as float32 tensors (for saving).
    Tensor mean() const;
    Tensor cholesky() const;
    /// Restores a fitted density from mean [d] and lower factor L [d, d] (e.g. a model file).
    void set(const Tensor& mean, const Tensor& cholesky, const GaussianOptions& opt);

private:
    GaussianOptions opt_;
    int64_t dim_ = 0;
    double shrinkage_ = 0;
    std::vector<double> mu_, L_;  // L_ row-major lower triangle (upper part zero)
    // Made from L on first use by score() (const and thread-safe): L^-1 (lower, row-major) for
    // CPU scoring through the full factor, computed once under `once`; float32 mu and L on each
    // CUDA device that scored, uploaded once (the mutex guards the map). A fit or set() starts a
    // fresh cache; copies of a density share it, which is safe since they share mu and L until
    // one of them is refitted.
    struct Derived {
        std::once_flag once;
        std::vector<double> Linv;
        std::mutex mutex;
        std::map<int, std::pair<Tensor, Tensor>> by_device;
    };
    std::shared_ptr<Derived> derived_ = std::make_shared<Derived>();
    // low-rank form when fitted on n < d/2 samples (see fit): centred samples, factor of K
    int64_t low_rank_ = 0;
    double alpha_ = 0;
    std::vector<double> Xc_, Lk_;
};

/// Ledoit-Wolf shrinkage intensity of samples X [n, d] (row-major doubles), as scikit-learn's
/// ledoit_wolf_shrinkage(X, assume_centered=False).
double ledoit_wolf_shrinkage(const std::vector<double>& X, int64_t n, int64_t d);

/// The same shrinkage from the moments of the centred samples Xc [n, d] (the one place its formula
/// is written; the CPU and CUDA fits compute the moments their own way): trace = tr(S),
/// frobenius = |S|_F^2 with S = Xc^T Xc / n, row_power = sum_i (sum_a Xc[i,a]^2)^2.
/// 0 when d == 1 or n <= 1.
double ledoit_wolf_from_moments(double trace, double frobenius, double row_power, int64_t n, int64_t d);

}  // namespace fsad::method
