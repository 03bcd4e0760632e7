// The paper's losses (Eqs. 1-3, METHOD.md "Losses") and the fixed-centre ablation, on Vars.
// cos(a, b) is F.cosine_similarity: a.b / max(|a||b|, 1e-8). sg(.) is Var::detach().
#pragma once
#include <vector>

#include "fsad/autograd/functions.hpp"

namespace fsad::method {

/// L_con (Eq. 1), symmetrised as in BYOL:
///   -(1/2N) sum_i [cos(p1_i, sg(z2_i)) + cos(p2_i, sg(z1_i))]
/// p1, p2: online predictions of views 1 and 2; z1, z2: target projections. All [N, D].
Var contrastive_loss(const Var& p1, const Var& z2, const Var& p2, const Var& z1);

/// L_pp (Eq. 2), cross-instance positive pairs on backbone features with a permutation p:
///   -(1/2N) sum_i [cos(f1_i, sg(fh1_{p(i)})) + cos(f1_{p(i)}, sg(fh1_i))]
/// f1: online backbone features of view 1, fh1: target backbone features of view 1.
Var positive_pair_loss(const Var& f1, const Var& fh1, const std::vector<int64_t>& perm);

/// L_np (Eq. 3), negative pairs: (1/N) sum_i cos(sg(fh1_i), fn_i), fn = online features of t_n(X).
Var negative_pair_loss(const Var& fh1, const Var& fn);

/// Fixed-centre loss (F.C., Ruff et al. 2018; the Table 5 ablation): (1/N) sum_i |f_i - c|^2.
Var fixed_centre_loss(const Var& f, const Tensor& centre);

}  // namespace fsad::method
