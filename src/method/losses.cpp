#include "fsad/method/losses.hpp"

#include <string>

namespace fsad::method {
namespace {
void check_pair(const Var& a, const Var& b, const char* what) {
    FSAD_CHECK(a.defined() && b.defined() && a.shape().ndim() == 2 && a.shape() == b.shape() && a.shape()[0] > 0, what,
               ": expected two non-empty [N, D] inputs of the same shape, got ",
               a.defined() ? a.shape().str() : std::string("undefined"), " and ",
               b.defined() ? b.shape().str() : std::string("undefined"));
}
float inv(int64_t n) { return 1.0f / static_cast<float>(n); }
}  // namespace

Var contrastive_loss(const Var& p1, const Var& z2, const Var& p2, const Var& z1) {
    check_pair(p1, z2, "contrastive_loss");
    check_pair(p2, z1, "contrastive_loss");
    const int64_t n = p1.shape()[0];
    Var s = ag::add(ag::sum(ag::cosine_similarity(p1, z2.detach())), ag::sum(ag::cosine_similarity(p2, z1.detach())));
    return ag::affine(s, -0.5f * inv(n));
}

Var positive_pair_loss(const Var& f1, const Var& fh1, const std::vector<int64_t>& perm) {
    check_pair(f1, fh1, "positive_pair_loss");
    const int64_t n = f1.shape()[0];
    FSAD_CHECK(static_cast<int64_t>(perm.size()) == n, "positive_pair_loss: permutation of length ", perm.size(),
               " for a batch of ", n);
    std::vector<char> seen(static_cast<size_t>(n), 0);
    for (int64_t p : perm) {
        FSAD_CHECK(p >= 0 && p < n && !seen[static_cast<size_t>(p)], "positive_pair_loss: not a permutation of 0..",
                   n - 1);
        seen[static_cast<size_t>(p)] = 1;
    }
    Var t = fh1.detach();
    Var a = ag::sum(ag::cosine_similarity(f1, ag::gather_rows(t, perm)));
    Var b = ag::sum(ag::cosine_similarity(ag::gather_rows(f1, perm), t));
    return ag::affine(ag::add(a, b), -0.5f * inv(n));
}

Var negative_pair_loss(const Var& fh1, const Var& fn) {
    check_pair(fh1, fn, "negative_pair_loss");
    return ag::affine(ag::sum(ag::cosine_similarity(fh1.detach(), fn)), inv(fn.shape()[0]));
}

Var fixed_centre_loss(const Var& f, const Tensor& centre) {
    FSAD_CHECK(f.defined() && f.shape().ndim() == 2 && f.shape()[0] > 0 && centre.defined() &&
                   centre.shape() == Shape({f.shape()[1]}),
               "fixed_centre_loss: features [N, D] and centre [D] expected");
    const int64_t n = f.shape()[0];
    std::vector<int64_t> rows(static_cast<size_t>(n), 0);
    Var c = ag::gather_rows(Var(centre.reshape(Shape{1, f.shape()[1]})), rows);  // centre repeated N times
    Var d = ag::sub(f, c);
    return ag::affine(ag::sum(ag::mul(d, d)), inv(n));
}

}  // namespace fsad::method
