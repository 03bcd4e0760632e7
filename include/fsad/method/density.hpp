// The Gaussian density of Sec. 3.4: fit mu and a shrunk covariance on (L2-normalised) features
// of normal images, score by the Mahalanobis distance d(z) = sqrt((z - mu)^T Sigma^-1 (z - mu)).
// Sigma^-1 is never formed: Sigma = L L^T (Cholesky), d(z) = |L^-1 (z - mu)|, with the triangular
// L^-1 computed once (LAPACK dtrtri) so that scoring a batch is one triangular multiply. With fewer
// samples than half the dimension (the few-shot case) scoring uses the equivalent low-rank
// (Woodbury) form, O(n d) per feature instead of O(d^2). Fitting and scoring run in double
// precision (d up to 2048 with a few dozen samples is ill-conditioned).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "fsad/core/ops.hpp"
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

    bool fitted() const { return !fit_.mu.empty(); }
    int64_t dim() const { return static_cast<int64_t>(fit_.mu.size()); }
    const GaussianOptions& options() const { return opt_; }
    /// Shrinkage intensity used (Ledoit-Wolf's estimate; 0 for Ridge).
    double shrinkage() const { return fit_.shrinkage; }
    /// mu [d] and the lower Cholesky factor L [d, d] of Sigma, as float32 tensors (for saving).
    Tensor mean() const;
    Tensor cholesky() const;
    /// Restores a fitted density from mean [d] and lower factor L [d, d] (e.g. a model file).
    void set(const Tensor& mean, const Tensor& cholesky, const GaussianOptions& opt);

private:
    GaussianOptions opt_;
    ops::DensityFit fit_;  // mu, the factor L and (CPU fits of few samples) the low-rank form
    // What score() derives from fit_ on first use (ops::DensityCache). A fit or set() starts a
    // fresh one; copies of a density share it, which is safe since they share fit_ until one of
    // them is refitted.
    std::shared_ptr<ops::DensityCache> cache_ = std::make_shared<ops::DensityCache>();
};

}  // namespace fsad::method
