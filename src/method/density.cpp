// The Gaussian density of Sec. 3.4 (include/fsad/method/density.hpp states the maths): what the
// method decides (the shrinkage, when a fit is refused, the model file's form), over the density
// ops of the front end (ops::density_fit, density_score: src/cpu/density.cpp, src/cuda/density.cu).
#include "fsad/method/density.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "fsad/core/error.hpp"

namespace fsad::method {

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
