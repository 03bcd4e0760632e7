// Winograd F(m x m, 3x3) convolution (Lavin & Gray 2016) for 3x3, stride-1, undilated, ungrouped
// convolutions, m = 2 or 4. An output tile of m x m reads an input tile of a x a, a = m + 2; the
// products become a*a GEMMs over channels, one per transform position xi:
//   U = G g G^T          filter 3x3 -> a x a
//   V = B^T d B          input tile a x a -> a x a
//   M[xi] = U[xi] V[xi]  GEMM: [O x C] by [C x tiles]
//   y = A^T M A          a x a -> m x m
// F(2x2,3x3): 16 multiplies per 4 outputs (2.25x fewer than direct), exact small integer
// transforms. F(4x4,3x3): 36 per 16 outputs (4x fewer), transforms with 1/6, 1/24 and powers of
// two, so rounding error grows by about one decimal digit (still ~1e-5 relative in float).
// The matrices (Tf<2>, Tf<4> below apply them to one row or column):
//   m = 2: B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
//          A^T = [1 1 1 0; 0 1 -1 -1]
//   m = 4: B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
//                 0 4 0 -5 0 1]
//          G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//          A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// Backward data is the same forward on dy with the filter rotated by 180 degrees and its channel
// axes swapped, padding 2 - p. Backward filter (m = 2 only) is the adjoint of the forward in g:
//   dU[xi] = sum over tiles (A dY A^T)[xi] V[xi]^T,  dg = G^T dU G.
// Gradient rule: outputs written (=).
#include "winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "gemm.hpp"
#include "packed_gemm.hpp"
#include "simd_avx512.hpp"  // <immintrin.h> with GCC 12's false uninitialised warnings silenced

#if defined(__AVX512F__) && !defined(FSAD_NO_AVX512)
#define FSAD_WINOGRAD_AVX512 1
#else
#define FSAD_WINOGRAD_AVX512 0
#endif

namespace fsad::cpu::winograd {
namespace {

// The 1-D transforms, applied along one axis of a tile (y = T x).
template <int M>
struct Tf;

template <>
struct Tf<2> {
    static constexpr int A = 4;
    template <class T>  // float, or a vector of floats
    static void input(const T (&d)[4], T (&t)[4]) {  // B^T
        t[0] = d[0] - d[2];
        t[1] = d[1] + d[2];
        t[2] = d[2] - d[1];
        t[3] = d[1] - d[3];
    }
    template <class T>  // float, or a vector of floats
    static void filter(const T (&g)[3], T (&u)[4]) {  // G
        u[0] = g[0];
        u[1] = 0.5f * (g[0] + g[1] + g[2]);
        u[2] = 0.5f * (g[0] - g[1] + g[2]);
        u[3] = g[2];
    }
    static void output(const float (&m)[4], float (&s)[2]) {  // A^T
        s[0] = m[0] + m[1] + m[2];
        s[1] = m[1] - m[2] - m[3];
    }
};

template <>
struct Tf<4> {
    static constexpr int A = 6;
    template <class T>  // float, or a vector of floats
    static void input(const T (&d)[6], T (&t)[6]) {  // B^T
        const T a = d[4] - 4.0f * d[2], b = d[3] - 4.0f * d[1];  // shared terms
        const T c = d[4] - d[2], e = 2.0f * (d[3] - d[1]);
        t[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
        t[1] = a + b;
        t[2] = a - b;
        t[3] = c + e;
        t[4] = c - e;
        t[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
    }
    template <class T>  // float, or a vector of floats
    static void filter(const T (&g)[3], T (&u)[6]) {  // G
        const T s = g[0] + g[2];
        u[0] = 0.25f * g[0];
        u[1] = (-1.0f / 6.0f) * (s + g[1]);
        u[2] = (-1.0f / 6.0f) * (s - g[1]);
        const T p = (1.0f / 24.0f) * g[0] + (1.0f / 6.0f) * g[2], q = (1.0f / 12.0f) * g[1];
        u[3] = p + q;
        u[4] = p - q;
        u[5] = g[2];
    }
    static void output(const float (&m)[6], float (&s)[4]) {  // A^T
        const float a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], e = m[3] - m[4];
        s[0] = m[0] + a + c;
        s[1] = b + 2.0f * e;
        s[2] = a + 4.0f * c;
        s[3] = b + 8.0f * e + m[5];
    }
};

struct Plan {
    int64_t n, cin, cout, h, w, ho, wo, pad, m, th, tw, tiles;  // m x m output tiles; tiles per image = th*tw
};

Plan plan(int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t w, int64_t pad, int64_t m) {
    Plan P{n, cin, cout, h, w, h + 2 * pad - 2, w + 2 * pad - 2, pad, m, 0, 0, 0};
    P.th = (P.ho + m - 1) / m;
    P.tw = (P.wo + m - 1) / m;
    P.tiles = P.th * P.tw;
    return P;
}

// Images per chunk: ~kTiles GEMM columns, an even share per thread, buffers <= ~8 MiB.
int64_t chunk_images(const Plan& P, int nt) {
    constexpr int64_t kTiles = 192;  // 384 and 768 measured 3-7% slower (ResNet18 steps, 2 threads)
    const int64_t a2 = (P.m + 2) * (P.m + 2);
    int64_t b = std::max<int64_t>(1, (kTiles + P.tiles - 1) / P.tiles);
    b = std::min<int64_t>(b, std::max<int64_t>(1, (P.n + nt - 1) / nt));
    const int64_t per_image = a2 * (P.cin + P.cout) * P.tiles;
    b = std::min<int64_t>(b, std::max<int64_t>(1, (int64_t(2) << 20) / std::max<int64_t>(1, per_image)));
    return std::max<int64_t>(1, std::min<int64_t>(b, P.n));
}

// The transforms run on kLanes tiles at once: fixed-length loops over the lanes that the compiler
// turns into vector instructions, plain C++ everywhere else. The lanes run over the GEMM columns of
// a chunk (tiles of all its images, row by row), whatever the image width: each lane reads its
// tile from zero-bordered staged planes through a table of offsets, so no lane needs a branch.
// (A layout with the lanes along one tile row, reading rows with strided loads, measured slower
// at every ResNet18 width, 7 to 56 outputs: its output rows had to be re-interleaved and copied.)
constexpr int64_t kLanes = 16;

// Forms of an ops::PreparedConv kept here: the transformed filters U under their tile size M (2,
// 4), and U packed for packed_gemm under kPackedWinograd + M.
constexpr int kPackedWinograd = 100;

int64_t round_lanes(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// dst[xi * stride + l] = v[xi][l] for the first cnt lanes (all kLanes: a fixed-length loop).
template <int N>
inline void store_lanes(const float (&v)[N][kLanes], float* dst, int64_t stride, int64_t cnt) {
    if (cnt == kLanes) {
        for (int xi = 0; xi < N; ++xi)
            for (int64_t l = 0; l < kLanes; ++l) dst[xi * stride + l] = v[xi][l];
    } else {
        for (int xi = 0; xi < N; ++xi)
            for (int64_t l = 0; l < cnt; ++l) dst[xi * stride + l] = v[xi][l];
    }
}

// U[(xi*O + o)*C + c] = (G g G^T)[xi], g = w[o][c] (3x3), O = cout, C = cin; or, with
// rotate_swap (backward data), g = rot180(w[c][o]) with O = cin, C = cout. Sixteen consecutive c
// of one row o at a time: the taps are read into lanes (stride 9 floats, or cin*9 when swapped),
// the transform runs on lanes and U is written contiguously. Uninitialised allocator memory:
// every element is written.
template <int M>
Tensor transform_filter(const float* w, int64_t cout, int64_t cin, bool rotate_swap) {
    constexpr int A = M + 2;
    constexpr int64_t L = kLanes;
    const int64_t O = rotate_swap ? cin : cout, C = rotate_swap ? cout : cin;
    Tensor Ut = Tensor::empty(Shape{A * A * O * C});
    float* U = Ut.data();
    const int64_t blocks_per_row = (C + L - 1) / L;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < O * blocks_per_row; ++blk) {
        const int64_t o = blk / blocks_per_row, c0 = blk % blocks_per_row * L, cnt = std::min(L, C - c0);
        // lane l holds the pair (o, c0 + l): its taps start at src + l * lane_stride
        const float* src = rotate_swap ? w + (c0 * cin + o) * 9 : w + (o * cin + c0) * 9;
        const int64_t lane_stride = rotate_swap ? cin * 9 : 9;
#if FSAD_WINOGRAD_AVX512
        if (!rotate_swap && cnt == L) {
            // the 16 lanes' filters are 144 consecutive floats: nine per lane, loaded masked as 16
            // rows and transposed in registers, so that vector t holds tap t of every lane
            __m512 r[16];
            for (int l = 0; l < 16; ++l) r[l] = _mm512_maskz_loadu_ps(0x1ff, src + l * 9);
            transpose16(r);
            __m512 u[A][3];  // G g
            for (int j = 0; j < 3; ++j) {
                const __m512 x[3] = {r[j], r[3 + j], r[6 + j]};
                __m512 y[A];
                Tf<M>::filter(x, y);
                for (int k = 0; k < A; ++k) u[k][j] = y[k];
            }
            for (int i = 0; i < A; ++i) {  // (G g) G^T, stored
                const __m512 x[3] = {u[i][0], u[i][1], u[i][2]};
                __m512 y[A];
                Tf<M>::filter(x, y);
                for (int k = 0; k < A; ++k) _mm512_storeu_ps(U + (i * A + k) * O * C + o * C + c0, y[k]);
            }
            continue;
        }
#endif
        float g[3][3][L] = {};
        for (int64_t l = 0; l < cnt; ++l)
            for (int i = 0; i < 3; ++i)
                for (int j = 0; j < 3; ++j)
                    g[i][j][l] = rotate_swap ? src[l * lane_stride + (2 - i) * 3 + (2 - j)] : src[l * lane_stride + i * 3 + j];
        float u[A][3][L];  // G g
        for (int j = 0; j < 3; ++j)
            for (int64_t l = 0; l < L; ++l) {
                float x[3] = {g[0][j][l], g[1][j][l], g[2][j][l]}, y[A];
                Tf<M>::filter(x, y);
                for (int k = 0; k < A; ++k) u[k][j][l] = y[k];
            }
        float v[A * A][L];  // (G g) G^T on all lanes, then stored
        for (int i = 0; i < A; ++i)
            for (int64_t l = 0; l < L; ++l) {
                float x[3] = {u[i][0][l], u[i][1][l], u[i][2][l]}, y[A];
                Tf<M>::filter(x, y);
                for (int k = 0; k < A; ++k) v[i * A + k][l] = y[k];
            }
        store_lanes(v, U + o * C + c0, O * C, cnt);
    }
    return Ut;
}

// out[xi * stride + l] = (B^T d_l B)[xi] for the first cnt lanes l, d[i][j][l] = element (i, j) of
// lane l's a x a input tile (the portable path; AVX-512 builds use input_tiles_avx512).
template <int M>
inline void input_tiles(const float (&d)[M + 2][M + 2][kLanes], float* out, int64_t stride, int64_t cnt) {
    constexpr int A = M + 2;
    float t[A][A][kLanes];  // B^T d
    for (int j = 0; j < A; ++j)
        for (int64_t l = 0; l < kLanes; ++l) {
            float x[A], y[A];
            for (int i = 0; i < A; ++i) x[i] = d[i][j][l];
            Tf<M>::input(x, y);
            for (int k = 0; k < A; ++k) t[k][j][l] = y[k];
        }
    float v[A * A][kLanes];  // (B^T d) B, all lanes, then stored
    for (int i = 0; i < A; ++i)
        for (int64_t l = 0; l < kLanes; ++l) {
            float x[A], y[A];
            for (int j = 0; j < A; ++j) x[j] = t[i][j][l];
            Tf<M>::input(x, y);
            for (int k = 0; k < A; ++k) v[i * A + k][l] = y[k];
        }
    store_lanes(v, out, stride, cnt);
}

// v = A^T m_l A (m x m) for the kLanes lanes l of m[xi * stride + l].
template <int M>
inline void output_tiles(const float* m, int64_t stride, float (&v)[M][M][kLanes]) {
    constexpr int A = M + 2;
    float s[M][A][kLanes];  // A^T m
    for (int j = 0; j < A; ++j) {
        const float* r[A];
        for (int k = 0; k < A; ++k) r[k] = m + (k * A + j) * stride;
        for (int64_t l = 0; l < kLanes; ++l) {
            float x[A], y[M];
            for (int k = 0; k < A; ++k) x[k] = r[k][l];
            Tf<M>::output(x, y);
            for (int i = 0; i < M; ++i) s[i][j][l] = y[i];
        }
    }
    for (int i = 0; i < M; ++i)  // (A^T m) A
        for (int64_t l = 0; l < kLanes; ++l) {
            float x[A], y[M];
            for (int j = 0; j < A; ++j) x[j] = s[i][j][l];
            Tf<M>::output(x, y);
            for (int c = 0; c < M; ++c) v[i][c][l] = y[c];
        }
}

// Per-thread staging of the output gradient (filter gradient, m = 2): two zero-padded rows.
struct Scratch {
    int64_t rw = 0;  // row buffer width
    std::vector<float> rows;
    explicit Scratch(const Plan& P) {
        rw = P.m * round_lanes(P.tw) + 2;
        rows.assign(static_cast<size_t>(P.m * rw), 0.0f);
    }
};

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

// Staged input planes and tile tables of one chunk. A chunk is a range [t0, t1) of the GEMM
// columns of the whole batch (image t / tiles, tile t % tiles, row-major over the tile grid):
// whole images when there are enough of them, parts of an image otherwise. Each input channel of
// the images the chunk touches is copied into zero-bordered planes; lane l of a block reads its
// tile at stage + in_off[t - t0] (the same offsets for every channel), outputs go back through
// out_off[t - t0] with the border tiles' missing rows and columns skipped.
struct TileScratch {
    int64_t hp = 0, wp = 0;
    int64_t i0 = 0, nimg = 0;        // the chunk's first image and how many it touches
    int64_t first_row = 0, last_row = 0;  // stage rows the chunk's tiles read: [first_row, hp) of its
                                          // first image, [0, last_row) of its last
    std::vector<float> stage;        // [nimg][hp][wp], border zero
    std::vector<int64_t> in_off;     // per chunk column: tile's top-left in stage
    std::vector<int64_t> out_off;    // per chunk column: tile's top-left in y (from image i0)
    std::vector<uint8_t> out_rows, out_cols;  // per chunk column: rows / columns of the tile inside y
    TileScratch(const Plan& P, int64_t max_cols) {
        hp = P.m * P.th + 2;
        wp = P.m * P.tw + 2;
        const int64_t max_images = std::min(P.n, (max_cols + P.tiles - 1) / P.tiles + 1);
        // + 8: the AVX-512 6x6 loads read 8-float rows, 2 floats past the last tile's
        stage.assign(static_cast<size_t>(max_images * hp * wp + 8), 0.0f);
        in_off.resize(static_cast<size_t>(max_cols));
        out_off.resize(static_cast<size_t>(max_cols));
        out_rows.resize(static_cast<size_t>(max_cols));
        out_cols.resize(static_cast<size_t>(max_cols));
    }
    void prepare(const Plan& P, int64_t t0, int64_t t1, int64_t O) {
        i0 = t0 / P.tiles;
        nimg = (t1 - 1) / P.tiles - i0 + 1;
        first_row = P.m * ((t0 % P.tiles) / P.tw);
        last_row = P.m * (((t1 - 1) % P.tiles) / P.tw) + P.m + 2;
        for (int64_t t = t0; t < t1; ++t) {
            const size_t k = static_cast<size_t>(t - t0);
            const int64_t i = t / P.tiles - i0, r = t % P.tiles, a = r / P.tw, b = r % P.tw;
            in_off[k] = i * hp * wp + P.m * a * wp + P.m * b;
            out_off[k] = i * O * P.ho * P.wo + P.m * a * P.wo + P.m * b;
            out_rows[k] = static_cast<uint8_t>(std::min(P.m, P.ho - P.m * a));
            out_cols[k] = static_cast<uint8_t>(std::min(P.m, P.wo - P.m * b));
        }
    }
};

#if FSAD_WINOGRAD_AVX512
// Input tiles of 16 lanes kept in registers (AVX-512): the portable loop below reads every tile
// element into a stack array and the compiler's transpose then stalls on store-to-load
// forwarding. Here each lane's tile rows become vectors (a 4x4 tile is one vector; a 6x6 tile is
// three, two 8-float rows each), 16x16 transposes turn them into one vector per tile position,
// B^T d B runs on those (Tf on vectors) and the rows of V are stored (the first cnt lanes).
template <int M>
inline void input_tiles_avx512(const float* stage, const int64_t* off, int64_t wp, float* out, int64_t stride,
                               int64_t cnt) {
    constexpr int A = M + 2;
    __m512 d[A][A];  // d[i][j]: tile element (i, j) of the 16 lanes
    __m512 r[16];
    if constexpr (M == 2) {  // lane l's 4x4 tile, four 4-float rows, is one vector
        for (int l = 0; l < 16; ++l) {
            const float* p = stage + off[l];
            __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(p));
            v = _mm512_insertf32x4(v, _mm_loadu_ps(p + wp), 1);
            v = _mm512_insertf32x4(v, _mm_loadu_ps(p + 2 * wp), 2);
            r[l] = _mm512_insertf32x4(v, _mm_loadu_ps(p + 3 * wp), 3);
        }
        transpose16(r);
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) d[i][j] = r[i * 4 + j];
    } else {  // 6x6 tiles: per pair of rows, 8 floats of each row (2 past the tile) make one vector
        for (int q = 0; q < 3; ++q) {
            for (int l = 0; l < 16; ++l) {
                const float* p = stage + off[l] + 2 * q * wp;
                const __m512d lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(p)));
                r[l] = _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm256_loadu_ps(p + wp)), 1));
            }
            transpose16(r);
            for (int j = 0; j < 6; ++j) {
                d[2 * q][j] = r[j];
                d[2 * q + 1][j] = r[8 + j];
            }
        }
    }
    __m512 t[A][A];  // B^T d
    for (int j = 0; j < A; ++j) {
        __m512 x[A], y[A];
        for (int i = 0; i < A; ++i) x[i] = d[i][j];
        Tf<M>::input(x, y);
        for (int k = 0; k < A; ++k) t[k][j] = y[k];
    }
    const __mmask16 m = cnt >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << cnt) - 1);
    for (int i = 0; i < A; ++i) {  // (B^T d) B, stored
        __m512 y[A];
        Tf<M>::input(t[i], y);
        for (int k = 0; k < A; ++k) _mm512_mask_storeu_ps(out + (i * A + k) * stride, m, y[k]);
    }
}
#endif

// V[(xi*C + c)*ld + t - t0] for the ld = t1 - t0 columns of the prepared chunk; x [n][C][h][w].
template <int M>
void transform_input(const float* x, const Plan& P, int64_t C, float* V, int64_t ld, TileScratch& S, int64_t c0,
                     int64_t c1) {
    const int64_t stride = C * ld;
    for (int64_t c = c0; c < c1; ++c) {
        for (int64_t i = 0; i < S.nimg; ++i) {
            // only the rows the chunk's tiles read (at batch 1 the threads share an image's tiles);
            // rows outside stay stale or zero and are not read
            const int64_t lo = i == 0 ? S.first_row : 0, hi = i == S.nimg - 1 ? S.last_row : S.hp;
            const float* xc = x + ((S.i0 + i) * C + c) * P.h * P.w;
            float* st = S.stage.data() + i * S.hp * S.wp;
            for (int64_t r = std::max<int64_t>(0, lo - P.pad); r < std::min<int64_t>(P.h, hi - P.pad); ++r)
                std::copy(xc + r * P.w, xc + (r + 1) * P.w, st + (r + P.pad) * S.wp + P.pad);
        }
        for (int64_t t0 = 0; t0 < ld; t0 += kLanes) {
            const int64_t cnt = std::min(kLanes, ld - t0);
            int64_t off[kLanes];
            for (int64_t l = 0; l < kLanes; ++l) off[l] = S.in_off[static_cast<size_t>(t0 + std::min(l, cnt - 1))];
#if FSAD_WINOGRAD_AVX512
            input_tiles_avx512<M>(S.stage.data(), off, S.wp, V + c * ld + t0, stride, cnt);
#else
            float d[M + 2][M + 2][kLanes];
            for (int i = 0; i < M + 2; ++i)
                for (int j = 0; j < M + 2; ++j) {
                    const float* base = S.stage.data() + i * S.wp + j;
                    for (int64_t l = 0; l < kLanes; ++l) d[i][j][l] = base[off[l]];
                }
            input_tiles<M>(d, V + c * ld + t0, stride, cnt);
#endif
        }
    }
}

// The prepared chunk's tiles of y [n][O][ho][wo] from M[(xi*O + o)*ld + t - t0] (kLanes readable
// floats past the last column).
template <int M>
void transform_output(const float* Mt, const Plan& P, int64_t O, int64_t ld, float* y, const TileScratch& S,
                      const Epilogue& e, int64_t o0, int64_t o1) {
    const int64_t stride = O * ld;
    for (int64_t o = o0; o < o1; ++o) {
        float* yo = y + (S.i0 * O + o) * P.ho * P.wo;
        for (int64_t t0 = 0; t0 < ld; t0 += kLanes) {
            float v[M][M][kLanes];
            output_tiles<M>(Mt + o * ld + t0, stride, v);
            if (!e.none() && !e.residual)  // (a residual is added below, where the addresses are known)
                for (int i = 0; i < M; ++i)
                    for (int c = 0; c < M; ++c)
                        for (int l = 0; l < kLanes; ++l) v[i][c][l] = e(v[i][c][l], o, nullptr);
            const int64_t cnt = std::min(kLanes, ld - t0);
            for (int64_t l = 0; l < cnt; ++l) {
                const size_t t = static_cast<size_t>(t0 + l);
                float* q = yo + S.out_off[t];
                const int nr = S.out_rows[t], nc = S.out_cols[t];
                if (e.residual) {
                    for (int i = 0; i < nr; ++i)
                        for (int c = 0; c < nc; ++c) q[i * P.wo + c] = e(v[i][c][l], o, q + i * P.wo + c);
                } else if (nr == M && nc == M) {
                    for (int i = 0; i < M; ++i)
                        for (int c = 0; c < M; ++c) q[i * P.wo + c] = v[i][c][l];
                } else {
                    for (int i = 0; i < nr; ++i)
                        for (int c = 0; c < nc; ++c) q[i * P.wo + c] = v[i][c][l];
                }
            }
        }
    }
}

// Forward on prepared filter transforms U [a*a][O][C]: y [n][O][ho][wo] from x [n][C][h][w].
// Threads take whole chunks (own buffers, single-threaded GEMMs). With at least one image per
// thread a chunk is a few whole images. With fewer images (inference on one image) the threads
// split the channels instead when the buffers of all tiles fit in ~8 MiB: each transforms a share
// of the input channels, then (after a barrier) multiplies and transforms back a share of the
// output channels over all tiles. So each reads only its share of U (at batch 1 the filters come
// from memory, and splitting the tiles had every thread read all of them) and the GEMMs get every
// tile as a column (ResNet18 at batch 1, layers 1-2). Larger planes: each image's tiles are split
// so that every thread gets an equal share of ranges of at most ~8 MiB of buffers.
template <int M>
void forward_with(const Tensor& U, const float* x, const Plan& P, int64_t C, int64_t O, float* y, const Epilogue& e,
                  const ops::PreparedConv* prepared = nullptr) {
    constexpr int A2 = (M + 2) * (M + 2);
    const int nt = omp_get_max_threads();
    const int64_t T = P.n * P.tiles;
    if (P.n < nt && nt > 1 && A2 * (C + O) * T <= (int64_t(2) << 20)) {
        Tensor V = Tensor::empty(Shape{A2 * C * T});
        Tensor Mt = Tensor::empty(Shape{A2 * O * T + kLanes});  // + lanes read past the last tile
        std::fill(Mt.data() + A2 * O * T, Mt.data() + A2 * O * T + kLanes, 0.0f);
#pragma omp parallel
        {
            const int t = omp_get_thread_num(), nth = omp_get_num_threads();
            TileScratch TS(P, T);
            TS.prepare(P, 0, T, O);
            const int64_t cs = (C + nth - 1) / nth, c0 = std::min(C, t * cs), c1 = std::min(C, c0 + cs);
            transform_input<M>(x, P, C, V.data(), T, TS, c0, c1);
#pragma omp barrier
            const int64_t os = (O + nth - 1) / nth, o0 = std::min(O, t * os), o1 = std::min(O, o0 + os);
            if (o1 > o0)
                for (int xi = 0; xi < A2; ++xi)
                    sgemm(false, false, o1 - o0, T, C, 1.0f, U.data() + (xi * O + o0) * C, C, V.data() + xi * C * T,
                          T, 0.0f, Mt.data() + (xi * O + o0) * T, T);
            // the output transform reads a few lanes past each row, into the next thread's rows
#pragma omp barrier
            transform_output<M>(Mt.data(), P, O, T, y, TS, e, o0, o1);
        }
        return;
    }
    int64_t cols;
    if (P.n >= nt) {
        cols = chunk_images(P, nt) * P.tiles;
    } else {
        const int64_t cap = std::max<int64_t>(kLanes, (int64_t(2) << 20) / (A2 * (C + O)));
        int64_t k = (T + cap - 1) / cap;
        k = (k + nt - 1) / nt * nt;  // a multiple of the thread count
        cols = std::max<int64_t>(1, (T + k - 1) / k);
    }
    const int64_t chunks = (T + cols - 1) / cols;
    // Products of depth >= 128 and >= 128 columns by fsad's packed kernel (packed_gemm.hpp): U
    // packed once per call here (OpenBLAS would pack it per chunk), or once for good with prepared
    // weights (their form kPackedWinograd + M). ResNet18 training step at 224 px -3.5%, batch-32
    // inference -4% (interleaved runs); from depth 64 up (layer1) it was slower at 64 px (+3%)
    Tensor Up;
    const int64_t usize = packed_gemm::packed_size(O, C), panels = packed_gemm::panel_count(O);
    if (packed_gemm::available() && C >= 128 && cols >= 128) {
        auto pack = [&] {
            Tensor t = Tensor::empty(Shape{A2 * usize});
#pragma omp parallel for schedule(static)
            for (int xi = 0; xi < A2; ++xi) packed_gemm::pack_into(U.data() + xi * O * C, O, C, C, t.data() + xi * usize);
            return t;
        };
        Up = prepared ? prepared->form(kPackedWinograd + M, pack) : pack();
    }
#pragma omp parallel
    {
        Tensor V = Tensor::empty(Shape{A2 * C * cols});
        // + lanes read past the last tile (computed, never stored; zeroed per chunk so they stay finite)
        Tensor Mt = Tensor::empty(Shape{A2 * O * cols + kLanes});
        TileScratch TS(P, cols);
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < chunks; ++ch) {
            const int64_t t0 = ch * cols, t1 = std::min(T, t0 + cols), ld = t1 - t0;
            TS.prepare(P, t0, t1, O);
            transform_input<M>(x, P, C, V.data(), ld, TS, 0, C);
            for (int xi = 0; xi < A2; ++xi) {
                if (Up.defined())
                    packed_gemm::multiply(Up.data() + xi * usize, O, C, 0, panels, V.data() + xi * C * ld, ld, ld,
                                          Mt.data() + xi * O * ld, ld);
                else
                    sgemm(false, false, O, ld, C, 1.0f, U.data() + xi * O * C, C, V.data() + xi * C * ld, ld, 0.0f,
                          Mt.data() + xi * O * ld, ld);
            }
            std::fill(Mt.data() + A2 * O * ld, Mt.data() + A2 * O * ld + kLanes, 0.0f);
            transform_output<M>(Mt.data(), P, O, ld, y, TS, e, 0, O);
        }
    }
}

template <int M>
void forward_tile(const Tensor& x, const Tensor& w, const Epilogue& e, const ops::Conv2dParams& p, const Tensor& y,
                  const ops::PreparedConv* prepared) {
    const Plan P = plan(x.dim(0), x.dim(1), w.dim(0), x.dim(2), x.dim(3), p.pad_h, M);
    auto make = [&] { return transform_filter<M>(w.data(), P.cout, P.cin, false); };
    if (prepared) {
        forward_with<M>(prepared->form(M, make), x.data(), P, P.cin, P.cout, y.data(), e, prepared);
        return;
    }
    forward_with<M>(make(), x.data(), P, P.cin, P.cout, y.data(), e);
}

template <int M>
void backward_data_tile(const Tensor& w, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dx) {
    // dx = conv(dy, rot180(w) with channels swapped), padding 2 - p: output size h again.
    const Plan P = plan(dy.dim(0), dy.dim(1), w.dim(1), dy.dim(2), dy.dim(3), 2 - p.pad_h, M);
    const Tensor U = transform_filter<M>(w.data(), w.dim(0), w.dim(1), true);
    forward_with<M>(U, dy.data(), P, P.cin, P.cout, dx.data(), Epilogue{});
}

}  // namespace

bool applicable(const Tensor& x, const Tensor& w, const ops::Conv2dParams& p) {
    return w.dim(2) == 3 && w.dim(3) == 3 && p.groups == 1 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 &&
           p.dil_w == 1 && p.pad_h == p.pad_w && p.pad_h <= 2 && x.dim(2) + 2 * p.pad_h >= 4 &&
           x.dim(3) + 2 * p.pad_w >= 4;
}

void conv2d_forward(const Tensor& x, const Tensor& w, const Epilogue& e, const ops::Conv2dParams& p, const Tensor& y,
                    int tile, const ops::PreparedConv* prepared) {
    if (tile == 4) forward_tile<4>(x, w, e, p, y, prepared);
    else forward_tile<2>(x, w, e, p, y, prepared);
}

void conv2d_backward_data(const Tensor& w, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dx, int tile) {
    if (tile == 4) backward_data_tile<4>(w, dy, p, dx);
    else backward_data_tile<2>(w, dy, p, dx);
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const ops::Conv2dParams& p, const Tensor& dw) {
    const Plan P = plan(x.dim(0), x.dim(1), dw.dim(0), x.dim(2), x.dim(3), p.pad_h, 2);
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
        TileScratch TS(P, b * P.tiles);
        bool first = true;
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < chunks; ++ch) {
            if (first) partial[static_cast<size_t>(t)] = Tensor::empty(Shape{usize});
            float* dU = partial[static_cast<size_t>(t)].data();
            const int64_t n0 = ch * b, nb = std::min(b, P.n - n0), ld = nb * P.tiles;
            TS.prepare(P, n0 * P.tiles, (n0 + nb) * P.tiles, P.cout);
            transform_input<2>(x.data(), P, P.cin, V.data(), ld, TS, 0, P.cin);
            for (int64_t i = 0; i < nb; ++i)
                transform_grad_output(dy.data() + (n0 + i) * P.cout * P.ho * P.wo, P, P.cout, Md.data(), ld,
                                      i * P.tiles, S);
            for (int xi = 0; xi < 16; ++xi)
                sgemm(false, true, P.cout, P.cin, ld, 1.0f, Md.data() + xi * P.cout * ld, ld, V.data() + xi * P.cin * ld,
                      ld, first ? 0.0f : 1.0f, dU + xi * P.cout * P.cin, P.cin);
            first = false;
        }
    }
    std::vector<const float*> parts;
    for (const Tensor& t : partial)
        if (t.defined()) parts.push_back(t.data());
    // dg = G^T (sum of partial dU) G, per (o, c), 16 (o, c) pairs at a time: the partial sums are
    // read as contiguous vectors (16 streams, one per Winograd position) instead of one float
    // from each of 16 far-apart rows per pair
    const int64_t cc = P.cout * P.cin;
#pragma omp parallel for schedule(static)
    for (int64_t b0 = 0; b0 < cc; b0 += 16) {
        const int64_t lanes = std::min<int64_t>(16, cc - b0);
        float u[16][16];  // [Winograd position][lane]
        for (int xi = 0; xi < 16; ++xi) {
            for (int l = 0; l < 16; ++l) u[xi][l] = 0.0f;
            for (const float* q : parts) {
                const float* r = q + xi * cc + b0;
                if (lanes == 16)
                    for (int l = 0; l < 16; ++l) u[xi][l] += r[l];
                else
                    for (int64_t l = 0; l < lanes; ++l) u[xi][l] += r[l];
            }
        }
        float q3[3][4][16], g[9][16];
        for (int j = 0; j < 4; ++j)
            for (int l = 0; l < 16; ++l) {
                q3[0][j][l] = u[j][l] + 0.5f * (u[4 + j][l] + u[8 + j][l]);
                q3[1][j][l] = 0.5f * (u[4 + j][l] - u[8 + j][l]);
                q3[2][j][l] = 0.5f * (u[4 + j][l] + u[8 + j][l]) + u[12 + j][l];
            }
        for (int i = 0; i < 3; ++i)
            for (int l = 0; l < 16; ++l) {
                g[i * 3 + 0][l] = q3[i][0][l] + 0.5f * (q3[i][1][l] + q3[i][2][l]);
                g[i * 3 + 1][l] = 0.5f * (q3[i][1][l] - q3[i][2][l]);
                g[i * 3 + 2][l] = 0.5f * (q3[i][1][l] + q3[i][2][l]) + q3[i][3][l];
            }
        float* out = dw.data() + b0 * 9;
        for (int64_t l = 0; l < lanes; ++l)
            for (int k = 0; k < 9; ++k) out[l * 9 + k] = g[k][l];
    }
    if (parts.empty()) std::fill(dw.data(), dw.data() + dw.numel(), 0.0f);
}

}  // namespace fsad::cpu::winograd
