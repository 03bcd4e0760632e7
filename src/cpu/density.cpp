// The Gaussian density on the CPU (ops::density_fit, density_score; include/fsad/method/density.hpp
// states the method): double precision, OpenBLAS and LAPACK. The fit: a covariance product split
// across fsad's threads, the shrinkage from its moments (math::ledoit_wolf_from_moments), a blocked
// Cholesky factor, and with few samples the low-rank (Woodbury) form. Scoring: a triangular
// multiply by the inverse factor, or the low-rank form, per block of rows.
// No gradient: the density is fitted, not trained.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "fsad/core/error.hpp"
#include "kernels.hpp"

extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
extern "C" void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda, int* info);

namespace fsad::cpu {
namespace {
// The density's products and factorisations split their work across fsad's OpenMP threads and
// call OpenBLAS/LAPACK single-threaded inside (as everywhere in fsad, src/cpu/gemm.hpp):
// OpenBLAS's own threads, woken per call, measured slower (they yield-spin beside fsad's pool).

// Row-block edges 0 = r_0 < ... < r_k = d that split the lower triangle of a d x d matrix into k
// parts of equal area: r_i = d sqrt(i / k).
std::vector<int64_t> triangle_edges(int64_t d, int k) {
    std::vector<int64_t> e(static_cast<size_t>(k) + 1);
    for (int i = 0; i <= k; ++i)
        e[static_cast<size_t>(i)] = static_cast<int64_t>(std::lround(static_cast<double>(d) * std::sqrt(static_cast<double>(i) / k)));
    return e;
}

int blocks_for(int64_t rows) { return static_cast<int>(std::clamp<int64_t>(rows / 64, 1, omp_get_max_threads())); }

// C[r, c] = alpha * sum_k P[r, k] P[c, k] + beta * C[r, c] for rows r and columns c <= r (the
// lower triangle) of the row-major C [m, m] (leading dimension ldc), P [m, kk] (leading dimension
// ldp). Row blocks of equal area, one GEMM left of the diagonal and one SYRK on it per block.
void lower_product(int64_t m, int64_t kk, double alpha, const double* P, int64_t ldp, double beta, double* C,
                   int64_t ldc) {
    const int nb = blocks_for(m);
    const std::vector<int64_t> e = triangle_edges(m, nb);
#pragma omp parallel for num_threads(nb) schedule(static, 1)
    for (int b = 0; b < nb; ++b) {
        const int64_t r0 = e[static_cast<size_t>(b)], r1 = e[static_cast<size_t>(b) + 1];
        if (r1 <= r0) continue;
        if (r0 > 0)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(r1 - r0), static_cast<int>(r0),
                        static_cast<int>(kk), alpha, P + r0 * ldp, static_cast<int>(ldp), P, static_cast<int>(ldp), beta,
                        C + r0 * ldc, static_cast<int>(ldc));
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, static_cast<int>(r1 - r0), static_cast<int>(kk), alpha,
                    P + r0 * ldp, static_cast<int>(ldp), beta, C + r0 * ldc + r0, static_cast<int>(ldc));
    }
}

// Double-precision scratch from the CPU caching allocator: a refit reuses cached blocks instead
// of faulting in fresh pages (a 512-d fit touches ~4 MB of scratch).
class HostScratch {
public:
    explicit HostScratch(int64_t count) : bytes_(static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(double)) {
        p_ = static_cast<double*>(alloc(bytes_));
    }
    ~HostScratch() { release(p_, bytes_); }
    HostScratch(const HostScratch&) = delete;
    HostScratch& operator=(const HostScratch&) = delete;
    double* data() { return p_; }

private:
    size_t bytes_;
    double* p_ = nullptr;
};

// T[k * n + i] = x_i[k] - mu[k] for the n features x_i (each L2-normalised first when l2, as
// F.normalize), transposed to d x n so that the covariance product reads rows; mu = their mean.
void centred_transposed(const Tensor& f, bool l2, double* T, std::vector<double>& mu) {
    const Tensor& h = f;
    const int64_t n = h.dim(0), d = h.dim(1);
    for (int64_t i = 0; i < n; ++i) {
        const float* x = h.data() + i * d;
        double nrm = 0;
#pragma omp simd reduction(+ : nrm)
        for (int64_t k = 0; k < d; ++k) nrm += static_cast<double>(x[k]) * x[k];
        FSAD_CHECK(std::isfinite(nrm), "density_fit: feature row ", i, " has a non-finite value");
        const double scale = l2 ? 1.0 / std::max(std::sqrt(nrm), 1e-12) : 1.0;
        for (int64_t k = 0; k < d; ++k) T[k * n + i] = static_cast<double>(x[k]) * scale;
    }
    for (int64_t k = 0; k < d; ++k) {
        double* t = T + k * n;
        double m = 0;
#pragma omp simd reduction(+ : m)
        for (int64_t i = 0; i < n; ++i) m += t[i];
        m /= static_cast<double>(n);
        mu[static_cast<size_t>(k)] = m;
        for (int64_t i = 0; i < n; ++i) t[i] -= m;
    }
}

// Lower Cholesky factor (row-major) of the SPD matrix A [d, d] (lower triangle used), in place;
// returns LAPACK's info (0 on success; k > 0: the leading minor of order k is not positive).
// Right-looking blocked: per block column, LAPACK's potrf on the diagonal block, a triangular
// solve of the panel below (row blocks across threads), and the trailing update (lower_product).
int cholesky_lower(double* A, int64_t d) {
    constexpr int64_t kBlock = 128;
    for (int64_t k0 = 0; k0 < d; k0 += kBlock) {
        const int64_t kb = std::min(kBlock, d - k0), rest = d - k0 - kb;
        double* A11 = A + k0 * d + k0;
        const int kbi = static_cast<int>(kb), di = static_cast<int>(d);
        int info = 0;
        dpotrf_("U", &kbi, A11, &di, &info);  // row-major lower == column-major upper
        if (info != 0) return static_cast<int>(k0) + info;
        if (rest == 0) break;
        double* A21 = A + (k0 + kb) * d + k0;
        // L21 = A21 L11^-T, rows split across threads
        const int nb = blocks_for(rest);
        const int64_t per = (rest + nb - 1) / nb;
#pragma omp parallel for num_threads(nb) schedule(static, 1)
        for (int b = 0; b < nb; ++b) {
            const int64_t r0 = b * per, rows = std::min(per, rest - r0);
            if (rows > 0)
                cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, static_cast<int>(rows), kbi, 1.0,
                            A11, di, A21 + r0 * d, di);
        }
        // A22 -= L21 L21^T (lower triangle)
        lower_product(rest, kb, -1.0, A21, d, 1.0, A + (k0 + kb) * d + k0 + kb, d);
    }
    for (int64_t i = 0; i < d; ++i)
        for (int64_t j = i + 1; j < d; ++j) A[i * d + j] = 0.0;
    return 0;
}

// L^-1 of a lower-triangular row-major L [d, d] with a positive diagonal (LAPACK dtrtri).
std::vector<double> invert_lower(const std::vector<double>& L, int64_t d) {
    std::vector<double> inv = L;
    const int dn = static_cast<int>(d);
    int info = 0;
    dtrtri_("U", "N", &dn, inv.data(), &dn, &info);  // row-major lower == column-major upper
    if (info != 0) throw Error("density_score: the Cholesky factor is singular (LAPACK dtrtri info " + std::to_string(info) + ")");
    return inv;
}
}  // namespace

void density_fit(const Tensor& features, const DensityFitOptions& o, DensityFit& r) {
    const int64_t n = features.dim(0), d = features.dim(1);
    HostScratch T(n * d), Sbuf(d * d);
    std::vector<double> mu(static_cast<size_t>(d));
    centred_transposed(features, o.l2_normalize, T.data(), mu);
    // S = Xc^T Xc / n = T T^T / n (maximum likelihood), lower triangle
    double* S = Sbuf.data();
    lower_product(d, n, 1.0 / static_cast<double>(n), T.data(), n, 0.0, S, d);
    double tr = 0;
    for (int64_t k = 0; k < d; ++k) tr += S[k * d + k];
    const double target = tr / static_cast<double>(d);
    double s = 0, alpha, beta;  // Sigma = alpha I + beta Xc^T Xc
    if (o.ledoit_wolf) {
        // scikit-learn's ledoit_wolf_shrinkage (math::ledoit_wolf_from_moments), with
        // sum((X^T X)^2)/n^2 = |S|_F^2 taken from S instead of a second product
        double fro = 0;
        for (int64_t i = 0; i < d; ++i)
            for (int64_t j = 0; j <= i; ++j) {
                const double v = S[i * d + j];
                fro += (i == j ? 1.0 : 2.0) * v * v;
            }
        std::vector<double> row_sq(static_cast<size_t>(n), 0.0);  // squared norms of the centred rows
        for (int64_t a = 0; a < d; ++a)
            for (int64_t i = 0; i < n; ++i) row_sq[static_cast<size_t>(i)] += T.data()[a * n + i] * T.data()[a * n + i];
        double beta_ = 0;
        for (double v : row_sq) beta_ += v * v;
        s = math::ledoit_wolf_from_moments(tr, fro, beta_, n, d);
        for (int64_t i = 0; i < d; ++i)
            for (int64_t j = 0; j <= i; ++j) S[i * d + j] *= (1.0 - s);
        for (int64_t k = 0; k < d; ++k) S[k * d + k] += s * target;
        alpha = s * target;
        beta = (1.0 - s) / static_cast<double>(n);
    } else {
        for (int64_t k = 0; k < d; ++k) S[k * d + k] += o.ridge;
        alpha = o.ridge;
        beta = 1.0 / static_cast<double>(n);
    }
    r = DensityFit{};
    r.shrinkage = s;
    r.info = cholesky_lower(S, d);
    if (r.info != 0) return;
    r.mu = std::move(mu);
    r.L.assign(S, S + d * d);
    // Few samples (n < d/2): Sigma = alpha I + beta Xc^T Xc has a cheaper inverse (Woodbury):
    //   Sigma^-1 = (I - Xc^T K^-1 Xc) / alpha,  K = (alpha/beta) I_n + Xc Xc^T,
    //   d(z)^2 = (|w|^2 - |Lk^-1 Xc w|^2) / alpha,  w = z - mu, K = Lk Lk^T,
    // O(n d) per scored feature instead of O(d^2).
    if (alpha > 0 && beta > 0 && 2 * n < d) {
        std::vector<double> Xc(static_cast<size_t>(n * d)), K(static_cast<size_t>(n * n), 0.0);
        for (int64_t k = 0; k < d; ++k)
            for (int64_t i = 0; i < n; ++i) Xc[static_cast<size_t>(i * d + k)] = T.data()[k * n + i];
        lower_product(n, d, 1.0, Xc.data(), d, 0.0, K.data(), n);
        for (int64_t i = 0; i < n; ++i) K[static_cast<size_t>(i * n + i)] += alpha / beta;
        if (cholesky_lower(K.data(), n) == 0) {
            r.low_rank = n;
            r.alpha = alpha;
            r.Xc = std::move(Xc);
            r.Lk = std::move(K);
        }
    }
}

void density_score(const Tensor& features, const DensityFit& g, DensityCache& cache, bool l2, const Tensor& out) {
    const Tensor& h = features;
    const int64_t m = h.dim(0), d = static_cast<int64_t>(g.mu.size()), n = g.low_rank;
    const double* Linv = nullptr;  // the inverse factor, made on first use (full-factor scoring only)
    if (!n) {
        std::call_once(cache.once, [&] { cache.Linv = invert_lower(g.L, d); });
        Linv = cache.Linv.data();
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
#pragma omp simd reduction(+ : nrm)
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
                const double scale = l2 ? 1.0 / std::max(std::sqrt(nrm), 1e-12) : 1.0;
                for (int64_t k = 0; k < d; ++k) zi[k] = zi[k] * scale - g.mu[static_cast<size_t>(k)];
            }
            if (!ok) continue;
            if (n) {
                // V = W Xc^T, then U = V Lk^-T (rows u = Lk^-1 v); d^2 = (|w|^2 - |u|^2) / alpha
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(n),
                            static_cast<int>(d), 1.0, z.data(), static_cast<int>(d), g.Xc.data(), static_cast<int>(d), 0.0,
                            v.data(), static_cast<int>(n));
                cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, static_cast<int>(rows),
                            static_cast<int>(n), 1.0, g.Lk.data(), static_cast<int>(n), v.data(), static_cast<int>(n));
                for (int64_t i = 0; i < rows; ++i) {
                    const double* wi = z.data() + i * d;
                    const double* ui = v.data() + i * n;
                    double w2 = 0, u2 = 0;
#pragma omp simd reduction(+ : w2)
                    for (int64_t k = 0; k < d; ++k) w2 += wi[k] * wi[k];
#pragma omp simd reduction(+ : u2)
                    for (int64_t k = 0; k < n; ++k) u2 += ui[k] * ui[k];
                    out.data()[r0 + i] = static_cast<float>(std::sqrt(std::max(0.0, (w2 - u2) / g.alpha)));
                }
            } else {
                // rows z_i -> y_i = L^-1 z_i, i.e. Y = Z L^-T: a triangular multiply by the inverse
                // factor (about twice as fast as the triangular solve)
                cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, static_cast<int>(rows),
                            static_cast<int>(d), 1.0, Linv, static_cast<int>(d), z.data(), static_cast<int>(d));
                for (int64_t i = 0; i < rows; ++i) {
                    const double* yi = z.data() + i * d;
                    double s2 = 0;
#pragma omp simd reduction(+ : s2)
                    for (int64_t k = 0; k < d; ++k) s2 += yi[k] * yi[k];
                    out.data()[r0 + i] = static_cast<float>(std::sqrt(s2));
                }
            }
        }
    }
    if (bad_row >= 0) throw Error("density_score: feature row " + std::to_string(bad_row) + " has a non-finite value");
}

}  // namespace fsad::cpu
