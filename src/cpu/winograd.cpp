// Winograd F(2x2, 3x3) convolution (Lavin & Gray 2016) for 3x3, stride-1, undilated, ungrouped
// convolutions: 16 multiplies per 2x2 outputs instead of 36, as 16 GEMMs over tiles.
//   U = G g G^T          (filter, 3x3 -> 4x4)           G   = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
//   V = B^T d B          (input tile, 4x4 -> 4x4)       B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   M[xi] = U[xi] V[xi]  (GEMM over channels, per transform position xi = 0..15)
//   y = A^T M A          (output tile, 4x4 -> 2x2)      A^T = [1 1 1 0; 0 1 -1 -1]
// Backward data is the same forward on dy with the filter rotated by 180 degrees and its channel
// axes swapped, padding 2 - p. Backward filter is the adjoint of the forward in g:
//   dU[xi] = sum over tiles (A dY A^T)[xi] V[xi]^T,  dg = G^T dU G.
// Gradient rule: outputs written (=).
#include "winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "gemm.hpp"

namespace fsad::cpu::winograd {
namespace {

struct Plan {
    int64_t n, cin, cout, h, w, ho, wo, pad, th, tw, tiles;  // tiles per image = th*tw
};

Plan plan(int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t w, int64_t pad) {
    Plan P{n, cin, cout, h, w, h + 2 * pad - 2, w + 2 * pad - 2, pad, 0, 0, 0};
    P.th = (P.ho + 1) / 2;
    P.tw = (P.wo + 1) / 2;
    P.tiles = P.th * P.tw;
    return P;
}

// Images per chunk: ~kTiles GEMM columns, an even share per thread, buffers <= ~8 MiB.
int64_t chunk_images(const Plan& P, int nt) {
    constexpr int64_t kTiles = 384;
    int64_t b = std::max<int64_t>(1, (kTiles + P.tiles - 1) / P.tiles);
    b = std::min<int64_t>(b, std::max<int64_t>(1, (P.n + nt - 1) / nt));
    const int64_t per_image = 16 * (P.cin + P.cout) * P.tiles;
    b = std::min<int64_t>(b, std::max<int64_t>(1, (int64_t(2) << 20) / std::max<int64_t>(1, per_image)));
    return std::max<int64_t>(1, std::min<int64_t>(b, P.n));
}

// U[(xi*O + o)*C + c] = (G g G^T)[xi], g = w[o][c] (3x3), O = cout, C = cin; or, with
// rotate_swap (backward data), g = rot180(w[c][o]) with O = cin, C = cout. Sixteen consecutive c
// of one row o at a time: the taps are read into lanes (stride 9 floats, or cin*9 when swapped),
// the transform runs on lanes and U is written contiguously. Uninitialised allocator memory:
// every element is written.
Tensor transform_filter(const float* w, int64_t cout, int64_t cin, bool rotate_swap) {
    constexpr int64_t L = 16;
    const int64_t O = rotate_swap ? cin : cout, C = rotate_swap ? cout : cin;
    Tensor Ut = Tensor::empty(Shape{16 * O * C});
    float* U = Ut.data();
    const int64_t blocks_per_row = (C + L - 1) / L;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < O * blocks_per_row; ++blk) {
        const int64_t o = blk / blocks_per_row, c0 = blk % blocks_per_row * L, cnt = std::min(L, C - c0);
        // lane l holds the pair (o, c0 + l): its taps start at src + l * lane_stride
        const float* src = rotate_swap ? w + (c0 * cin + o) * 9 : w + (o * cin + c0) * 9;
        const int64_t lane_stride = rotate_swap ? cin * 9 : 9;
        float g[3][3][L] = {};
        for (int64_t l = 0; l < cnt; ++l)
            for (int i = 0; i < 3; ++i)
                for (int j = 0; j < 3; ++j)
                    g[i][j][l] = rotate_swap ? src[l * lane_stride + (2 - i) * 3 + (2 - j)] : src[l * lane_stride + i * 3 + j];
        float u[4][3][L];  // G g
        for (int j = 0; j < 3; ++j)
            for (int64_t l = 0; l < L; ++l) {
                u[0][j][l] = g[0][j][l];
                u[1][j][l] = 0.5f * (g[0][j][l] + g[1][j][l] + g[2][j][l]);
                u[2][j][l] = 0.5f * (g[0][j][l] - g[1][j][l] + g[2][j][l]);
                u[3][j][l] = g[2][j][l];
            }
        for (int i = 0; i < 4; ++i) {  // (G g) G^T
            float* r0 = U + ((i * 4 + 0) * O + o) * C + c0;
            float* r1 = U + ((i * 4 + 1) * O + o) * C + c0;
            float* r2 = U + ((i * 4 + 2) * O + o) * C + c0;
            float* r3 = U + ((i * 4 + 3) * O + o) * C + c0;
            for (int64_t l = 0; l < cnt; ++l) {
                r0[l] = u[i][0][l];
                r1[l] = 0.5f * (u[i][0][l] + u[i][1][l] + u[i][2][l]);
                r2[l] = 0.5f * (u[i][0][l] - u[i][1][l] + u[i][2][l]);
                r3[l] = u[i][2][l];
            }
        }
    }
    return Ut;
}

// The transforms run on kLanes tiles of one tile row at once: fixed-length loops over the lanes
// that the compiler turns into vector instructions (stride-2 loads become permutes), plain C++
// everywhere else. Inputs are staged in zero-bordered buffers so that every lane reads in
// bounds and no lane needs a branch; only the first `cnt` lanes of the last block are stored.
constexpr int64_t kLanes = 16;

int64_t round_lanes(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Per-thread staging: a zero-bordered input plane (interior at [pad, pad+h) x [pad, pad+w)),
// two output / gradient rows.
struct Scratch {
    int64_t wp = 0, rw = 0;  // plane width; row buffer width
    std::vector<float> plane, rows;
    explicit Scratch(const Plan& P) {
        wp = 2 * round_lanes(P.tw) + 2;
        rw = 2 * round_lanes(P.tw) + 2;
        plane.assign(static_cast<size_t>((2 * P.th + 2) * wp), 0.0f);
        rows.assign(static_cast<size_t>(2 * rw), 0.0f);
    }
};

// d[i][j][l] = row_i[2 l + j]: the 4x4 input tiles of kLanes consecutive tiles.
inline void load_tiles(const float* base, int64_t stride, float (&d)[4][4][kLanes]) {
    for (int i = 0; i < 4; ++i) {
        const float* row = base + i * stride;
        for (int j = 0; j < 4; ++j)
            for (int64_t l = 0; l < kLanes; ++l) d[i][j][l] = row[2 * l + j];
    }
}

// The transforms of 16 tiles, shared by the row and the narrow layouts.
// out[xi * stride + l] = (B^T d_l B)[xi] for the first cnt lanes l.
inline void input_tiles(const float (&d)[4][4][kLanes], float* out, int64_t stride, int64_t cnt) {
    float t[4][4][kLanes];  // B^T d
    for (int j = 0; j < 4; ++j)
        for (int64_t l = 0; l < kLanes; ++l) {
            t[0][j][l] = d[0][j][l] - d[2][j][l];
            t[1][j][l] = d[1][j][l] + d[2][j][l];
            t[2][j][l] = d[2][j][l] - d[1][j][l];
            t[3][j][l] = d[1][j][l] - d[3][j][l];
        }
    for (int i = 0; i < 4; ++i) {  // (B^T d) B
        float* o0 = out + (i * 4 + 0) * stride;
        float* o1 = out + (i * 4 + 1) * stride;
        float* o2 = out + (i * 4 + 2) * stride;
        float* o3 = out + (i * 4 + 3) * stride;
        for (int64_t l = 0; l < cnt; ++l) {
            o0[l] = t[i][0][l] - t[i][2][l];
            o1[l] = t[i][1][l] + t[i][2][l];
            o2[l] = t[i][2][l] - t[i][1][l];
            o3[l] = t[i][1][l] - t[i][3][l];
        }
    }
}

// v = A^T m_l A (2x2) for the 16 lanes l of m[xi * stride + l].
inline void output_tiles(const float* m, int64_t stride, float (&v)[2][2][kLanes]) {
    float s[2][4][kLanes];  // A^T m
    for (int j = 0; j < 4; ++j) {
        const float* m0 = m + j * stride;
        const float* m1 = m + (4 + j) * stride;
        const float* m2 = m + (8 + j) * stride;
        const float* m3 = m + (12 + j) * stride;
        for (int64_t l = 0; l < kLanes; ++l) {
            s[0][j][l] = m0[l] + m1[l] + m2[l];
            s[1][j][l] = m1[l] - m2[l] - m3[l];
        }
    }
    for (int i = 0; i < 2; ++i)  // (A^T m) A
        for (int64_t l = 0; l < kLanes; ++l) {
            v[i][0][l] = s[i][0][l] + s[i][1][l] + s[i][2][l];
            v[i][1][l] = s[i][1][l] - s[i][2][l] - s[i][3][l];
        }
}

// V[(xi*C + c)*ld + col0 + t] = (B^T d B)[xi] for tile t of one image x [C,h,w].
void transform_input(const float* x, const Plan& P, int64_t C, float* V, int64_t ld, int64_t col0, Scratch& S) {
    const int64_t stride = C * ld;  // between transform positions
    float* plane = S.plane.data();
    for (int64_t c = 0; c < C; ++c) {
        const float* xc = x + c * P.h * P.w;
        for (int64_t r = 0; r < P.h; ++r)
            std::copy(xc + r * P.w, xc + (r + 1) * P.w, plane + (r + P.pad) * S.wp + P.pad);
        for (int64_t a = 0; a < P.th; ++a)
            for (int64_t b0 = 0; b0 < P.tw; b0 += kLanes) {
                float d[4][4][kLanes];
                load_tiles(plane + 2 * a * S.wp + 2 * b0, S.wp, d);
                input_tiles(d, V + c * ld + col0 + a * P.tw + b0, stride, std::min(kLanes, P.tw - b0));
            }
    }
}

// y [O, ho, wo] of one image from M[(xi*O + o)*ld + col0 + t]: y_tile = A^T m A. M must hold
// kLanes readable floats past its last tile (lanes beyond the tile row are computed, not stored).
void transform_output(const float* M, const Plan& P, int64_t O, int64_t ld, int64_t col0, float* y, Scratch& S) {
    const int64_t stride = O * ld;
    float* rows[2] = {S.rows.data(), S.rows.data() + S.rw};
    for (int64_t o = 0; o < O; ++o) {
        float* yo = y + o * P.ho * P.wo;
        for (int64_t a = 0; a < P.th; ++a) {
            for (int64_t b0 = 0; b0 < P.tw; b0 += kLanes) {
                const float* m = M + o * ld + col0 + a * P.tw + b0;
                float v[2][2][kLanes];
                output_tiles(m, stride, v);
                for (int i = 0; i < 2; ++i) {  // the two columns of each tile, interleaved
                    float* r = rows[i] + 2 * b0;
                    for (int64_t l = 0; l < kLanes; ++l) {
                        r[2 * l] = v[i][0][l];
                        r[2 * l + 1] = v[i][1][l];
                    }
                }
            }
            for (int i = 0; i < 2 && 2 * a + i < P.ho; ++i)
                std::copy(rows[i], rows[i] + P.wo, yo + (2 * a + i) * P.wo);
        }
    }
}

// Mdy[(xi*O + o)*ld + col0 + t] = (A e A^T)[xi] for the 2x2 dy tile e (zero beyond ho/wo).
void transform_grad_output(const float* dy, const Plan& P, int64_t O, float* Mdy, int64_t ld, int64_t col0,
                           Scratch& S) {
    const int64_t stride = O * ld;
    float* rows[2] = {S.rows.data(), S.rows.data() + S.rw};
    for (int64_t o = 0; o < O; ++o) {
        const float* d = dy + o * P.ho * P.wo;
        for (int64_t a = 0; a < P.th; ++a) {
            for (int i = 0; i < 2; ++i) {  // staged rows: dy row 2a+i, zero beyond ho and wo
                std::fill(rows[i], rows[i] + S.rw, 0.0f);
                if (2 * a + i < P.ho) std::copy(d + (2 * a + i) * P.wo, d + (2 * a + i + 1) * P.wo, rows[i]);
            }
            for (int64_t b0 = 0; b0 < P.tw; b0 += kLanes) {
                float e[2][2][kLanes];
                for (int i = 0; i < 2; ++i)
                    for (int j = 0; j < 2; ++j)
                        for (int64_t l = 0; l < kLanes; ++l) e[i][j][l] = rows[i][2 * (b0 + l) + j];
                float r4[4][2][kLanes];
                for (int j = 0; j < 2; ++j)
                    for (int64_t l = 0; l < kLanes; ++l) {
                        r4[0][j][l] = e[0][j][l];
                        r4[1][j][l] = e[0][j][l] + e[1][j][l];
                        r4[2][j][l] = e[0][j][l] - e[1][j][l];
                        r4[3][j][l] = -e[1][j][l];
                    }
                const int64_t cnt = std::min(kLanes, P.tw - b0);
                float* out = Mdy + o * ld + col0 + a * P.tw + b0;
                for (int i = 0; i < 4; ++i) {
                    float* o0 = out + (i * 4 + 0) * stride;
                    float* o1 = out + (i * 4 + 1) * stride;
                    float* o2 = out + (i * 4 + 2) * stride;
                    float* o3 = out + (i * 4 + 3) * stride;
                    for (int64_t l = 0; l < cnt; ++l) {
                        o0[l] = r4[i][0][l];
                        o1[l] = r4[i][0][l] + r4[i][1][l];
                        o2[l] = r4[i][0][l] - r4[i][1][l];
                        o3[l] = -r4[i][1][l];
                    }
                }
            }
        }
    }
}

// Narrow images (fewer tiles per row than lanes): the lanes run over the chunk's columns
// instead, across tile rows and images. Each input channel of the chunk's images is staged in
// zero-bordered planes; lane l of a block reads its tile at stage + in_off[t] (the same offsets
// for every channel), outputs go back through out_off[t] with the border tiles' missing rows and
// columns skipped.
struct NarrowScratch {
    int64_t hp = 0, wp = 0;
    std::vector<float> stage;        // [nb][hp][wp], border zero
    std::vector<int64_t> in_off;     // per chunk column: tile's top-left in stage
    std::vector<int64_t> out_off;    // per chunk column: tile's top-left in y (from the chunk's first image)
    std::vector<uint8_t> out_mask;   // bit 0: second column exists, bit 1: second row exists
    NarrowScratch(const Plan& P, int64_t nb_max, int64_t O) {
        hp = 2 * P.th + 2;
        wp = 2 * P.tw + 2;
        stage.assign(static_cast<size_t>(nb_max * hp * wp), 0.0f);
        const int64_t cols = nb_max * P.tiles;
        in_off.resize(static_cast<size_t>(cols));
        out_off.resize(static_cast<size_t>(cols));
        out_mask.resize(static_cast<size_t>(cols));
        for (int64_t t = 0; t < cols; ++t) {
            const int64_t i = t / P.tiles, r = t % P.tiles, a = r / P.tw, b = r % P.tw;
            in_off[static_cast<size_t>(t)] = i * hp * wp + 2 * a * wp + 2 * b;
            out_off[static_cast<size_t>(t)] = i * O * P.ho * P.wo + 2 * a * P.wo + 2 * b;
            out_mask[static_cast<size_t>(t)] = static_cast<uint8_t>((2 * b + 1 < P.wo ? 1 : 0) | (2 * a + 1 < P.ho ? 2 : 0));
        }
    }
};

// V[(xi*C + c)*ld + t] for the ld = nb * tiles columns of images x [nb][C][h][w].
void transform_input_narrow(const float* x, const Plan& P, int64_t C, int64_t nb, float* V, int64_t ld,
                            NarrowScratch& S) {
    const int64_t stride = C * ld;
    for (int64_t c = 0; c < C; ++c) {
        for (int64_t i = 0; i < nb; ++i) {
            const float* xc = x + (i * C + c) * P.h * P.w;
            float* st = S.stage.data() + i * S.hp * S.wp;
            for (int64_t r = 0; r < P.h; ++r)
                std::copy(xc + r * P.w, xc + (r + 1) * P.w, st + (r + P.pad) * S.wp + P.pad);
        }
        for (int64_t t0 = 0; t0 < ld; t0 += kLanes) {
            const int64_t cnt = std::min(kLanes, ld - t0);
            int64_t off[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) off[l] = S.in_off[static_cast<size_t>(t0 + std::min(l, cnt - 1))];
            float d[4][4][kLanes];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) {
                    const float* base = S.stage.data() + i * S.wp + j;
                    for (int64_t l = 0; l < kLanes; ++l) d[i][j][l] = base[off[l]];
                }
            input_tiles(d, V + c * ld + t0, stride, cnt);
        }
    }
}

// y [nb][O][ho][wo] from M[(xi*O + o)*ld + t] (16 readable floats past the last column).
void transform_output_narrow(const float* M, const Plan& P, int64_t O, int64_t ld, float* y, const NarrowScratch& S) {
    const int64_t stride = O * ld;
    for (int64_t o = 0; o < O; ++o) {
        float* yo = y + o * P.ho * P.wo;
        for (int64_t t0 = 0; t0 < ld; t0 += kLanes) {
            const float* m = M + o * ld + t0;
            float v[2][2][kLanes];
            output_tiles(m, stride, v);
            const int64_t cnt = std::min(kLanes, ld - t0);
            for (int64_t l = 0; l < cnt; ++l) {
                float* q = yo + S.out_off[static_cast<size_t>(t0 + l)];
                const uint8_t mask = S.out_mask[static_cast<size_t>(t0 + l)];
                q[0] = v[0][0][l];
                if (mask & 1) q[1] = v[0][1][l];
                if (mask & 2) {
                    q[P.wo] = v[1][0][l];
                    if (mask & 1) q[P.wo + 1] = v[1][1][l];
                }
            }
        }
    }
}

// Forward on prepared filter transforms U [16][O][C]: y [n][O][ho][wo] from x [n][C][h][w].
void forward_with(const Tensor& U, const float* x, const Plan& P, int64_t C, int64_t O, float* y) {
    const int nt = omp_get_max_threads();
    const int64_t b = chunk_images(P, nt), chunks = (P.n + b - 1) / b;
#pragma omp parallel
    {
        Tensor V = Tensor::empty(Shape{16 * C * b * P.tiles});
        // + lanes read past the last tile (computed, never stored; zeroed per chunk so they stay finite)
        Tensor M = Tensor::empty(Shape{16 * O * b * P.tiles + kLanes});
        Scratch S(P);
        const bool narrow = P.tw < kLanes;
        NarrowScratch NS = narrow ? NarrowScratch(P, b, O) : NarrowScratch(Plan{}, 0, 0);
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < chunks; ++ch) {
            const int64_t n0 = ch * b, nb = std::min(b, P.n - n0), ld = nb * P.tiles;
            if (narrow)
                transform_input_narrow(x + n0 * C * P.h * P.w, P, C, nb, V.data(), ld, NS);
            else
                for (int64_t i = 0; i < nb; ++i)
                    transform_input(x + (n0 + i) * C * P.h * P.w, P, C, V.data(), ld, i * P.tiles, S);
            for (int xi = 0; xi < 16; ++xi)
                sgemm(false, false, O, ld, C, 1.0f, U.data() + xi * O * C, C, V.data() + xi * C * ld, ld, 0.0f,
                      M.data() + xi * O * ld, ld);
            std::fill(M.data() + 16 * O * ld, M.data() + 16 * O * ld + kLanes, 0.0f);
            if (narrow)
                transform_output_narrow(M.data(), P, O, ld, y + n0 * O * P.ho * P.wo, NS);
            else
                for (int64_t i = 0; i < nb; ++i)
                    transform_output(M.data(), P, O, ld, i * P.tiles, y + (n0 + i) * O * P.ho * P.wo, S);
        }
    }
}

}  // namespace

bool applicable(const Tensor& x, const Tensor& w, const ops::Conv2dParams& p) {
    return w.dim(2) == 3 && w.dim(3) == 3 && p.groups == 1 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 &&
           p.dil_w == 1 && p.pad_h == p.pad_w && p.pad_h <= 2 && x.dim(2) + 2 * p.pad_h >= 4 &&
           x.dim(3) + 2 * p.pad_w >= 4;
}

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const ops::Conv2dParams& p, const Tensor& y) {
    const Plan P = plan(x.dim(0), x.dim(1), w.dim(0), x.dim(2), x.dim(3), p.pad_h);
    const Tensor U = transform_filter(w.data(), P.cout, P.cin, false);
    forward_with(U, x.data(), P, P.cin, P.cout, y.data());
    if (bias) {
        const int64_t hw = P.ho * P.wo;
#pragma omp parallel for schedule(static)
        for (int64_t nc = 0; nc < P.n * P.cout; ++nc) {
            const float bv = bias->data()[nc % P.cout];
            float* yc = y.data() + nc * hw;
            for (int64_t i = 0; i < hw; ++i) yc[i] += bv;
        }
    }
}

void conv2d_backward_data(const Tensor& w, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dx) {
    // dx = conv(dy, rot180(w) with channels swapped), padding 2 - p: output size h again.
    const Plan P = plan(dy.dim(0), dy.dim(1), w.dim(1), dy.dim(2), dy.dim(3), 2 - p.pad_h);
    const Tensor U = transform_filter(w.data(), w.dim(0), w.dim(1), true);
    forward_with(U, dy.data(), P, P.cin, P.cout, dx.data());
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dw) {
    const Plan P = plan(x.dim(0), x.dim(1), dw.dim(0), x.dim(2), x.dim(3), p.pad_h);
    const int nt = omp_get_max_threads();
    const int64_t b = chunk_images(P, nt), chunks = (P.n + b - 1) / b;
    const int64_t usize = 16 * P.cout * P.cin;
    std::vector<Tensor> partial(static_cast<size_t>(nt));
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        Tensor V = Tensor::empty(Shape{16 * P.cin * b * P.tiles});
        Tensor Md = Tensor::empty(Shape{16 * P.cout * b * P.tiles});
        Scratch S(P);
        bool first = true;
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < chunks; ++ch) {
            if (first) partial[static_cast<size_t>(t)] = Tensor::empty(Shape{usize});
            float* dU = partial[static_cast<size_t>(t)].data();
            const int64_t n0 = ch * b, nb = std::min(b, P.n - n0), ld = nb * P.tiles;
            for (int64_t i = 0; i < nb; ++i) {
                transform_input(x.data() + (n0 + i) * P.cin * P.h * P.w, P, P.cin, V.data(), ld, i * P.tiles, S);
                transform_grad_output(dy.data() + (n0 + i) * P.cout * P.ho * P.wo, P, P.cout, Md.data(), ld,
                                      i * P.tiles, S);
            }
            for (int xi = 0; xi < 16; ++xi)
                sgemm(false, true, P.cout, P.cin, ld, 1.0f, Md.data() + xi * P.cout * ld, ld, V.data() + xi * P.cin * ld,
                      ld, first ? 0.0f : 1.0f, dU + xi * P.cout * P.cin, P.cin);
            first = false;
        }
    }
    std::vector<const float*> parts;
    for (const Tensor& t : partial)
        if (t.defined()) parts.push_back(t.data());
    // dg = G^T (sum of partial dU) G, per (o, c)
#pragma omp parallel for schedule(static)
    for (int64_t oc = 0; oc < P.cout * P.cin; ++oc) {
        float u[4][4];
        for (int xi = 0; xi < 16; ++xi) {
            float s = 0.0f;
            for (const float* q : parts) s += q[xi * P.cout * P.cin + oc];
            u[xi / 4][xi % 4] = s;
        }
        float q3[3][4];
        for (int j = 0; j < 4; ++j) {
            q3[0][j] = u[0][j] + 0.5f * (u[1][j] + u[2][j]);
            q3[1][j] = 0.5f * (u[1][j] - u[2][j]);
            q3[2][j] = 0.5f * (u[1][j] + u[2][j]) + u[3][j];
        }
        float* g = dw.data() + oc * 9;
        for (int i = 0; i < 3; ++i) {
            g[i * 3 + 0] = q3[i][0] + 0.5f * (q3[i][1] + q3[i][2]);
            g[i * 3 + 1] = 0.5f * (q3[i][1] - q3[i][2]);
            g[i * 3 + 2] = 0.5f * (q3[i][1] + q3[i][2]) + q3[i][3];
        }
    }
    if (parts.empty()) std::fill(dw.data(), dw.data() + dw.numel(), 0.0f);
}

}  // namespace fsad::cpu::winograd
