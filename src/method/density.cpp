// The Gaussian density of Sec. 3.4 (include/fsad/method/density.hpp states the maths): what the
// method decides (the shrinkage, when a fit is refused, the model file's form), over the density
// ops of the front end (ops::density_fit, density_score: src/cpu/density.cpp, src/cuda/density.cu).
#include "fsad/method/density.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "fsad/core/error.hpp"

namespace fsad::method {

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
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double h = 0;  // (X X^T)[i, j]
            for (int64_t a = 0; a < d; ++a) h += X[static_cast<size_t>(i * d + a)] * X[static_cast<size_t>(j * d + a)];
            delta_ += h * h;
        }
    const double nn = static_cast<double>(n);
    return math::ledoit_wolf_from_moments(emp_trace, delta_ / (nn * nn), beta_, n, d);
}

void GaussianDensity::fit(const Tensor& features, const GaussianOptions& opt) {
    FSAD_CHECK(opt.ridge >= 0, "GaussianDensity::fit: ridge must be >= 0, got ", opt.ridge);
    ops::DensityFitOptions o;
    o.l2_normalize = opt.l2_normalize;
    o.ledoit_wolf = opt.shrinkage == Shrinkage::LedoitWolf;
    o.ridge = opt.shrinkage == Shrinkage::Ridge ? opt.ridge : 0.0;
    ops::DensityFit g = ops::density_fit(features, o);
    if (g.info != 0)
        throw Error("GaussianDensity::fit: the covariance of " + std::to_string(features.dim(0)) + " samples in " +
                    std::to_string(features.dim(1)) + " dimensions is not positive definite (potrf info " +
                    std::to_string(g.info) +
                    "); with identical samples or too few of them use more shots/augmentations or "
                    "Shrinkage::Ridge with a ridge > 0");
    opt_ = opt;
    fit_ = std::move(g);
    cache_ = std::make_shared<ops::DensityCache>();
}

Tensor GaussianDensity::score(const Tensor& features) const {
    FSAD_CHECK(fitted(), "GaussianDensity::score: the density is not fitted");
    return ops::density_score(features, fit_, *cache_, opt_.l2_normalize);
}

Tensor GaussianDensity::mean() const {
    return Tensor::from_vector(Shape{dim()}, std::vector<float>(fit_.mu.begin(), fit_.mu.end()));
}

Tensor GaussianDensity::cholesky() const {
    return Tensor::from_vector(Shape{dim(), dim()}, std::vector<float>(fit_.L.begin(), fit_.L.end()));
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
    fit_ = ops::DensityFit{};  // a restored density scores through the full factor
    fit_.mu.assign(m.begin(), m.end());
    fit_.L.assign(l.begin(), l.end());
    cache_ = std::make_shared<ops::DensityCache>();
    opt_ = opt;
}

}  // namespace fsad::method
