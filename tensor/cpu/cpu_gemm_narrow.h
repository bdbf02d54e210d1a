// Narrow f32 GEMMs: c = alpha * a @ b + beta * c where one of c's sides, or the inner dimension,
// is 16..64 and the rest is long. These are the products low-rank PETL methods add to a Linear
// layer: x U^T and g V (narrow c), g^T z and u^T x (narrow c, long inner dimension), z V^T and
// du U (narrow inner dimension). OpenBLAS packs the long operand into its panel format on every
// such call although each of its elements then feeds only R multiply-adds, and on two threads it
// runs the short-inner ones slower than on one; these kernels read the long operand where it lies
// and pack only the narrow one (R x k, a few hundred KB at most).
//
// The problem is first turned so that c's rows are the long side: c (L, S) = a (L, k) @ b (k, S).
// Then, by the layout of a:
//   dot form   (a's rows run along k: x U^T, g V): c[l, s] = a[l, :] . b[:, s], one vector of
//              partial sums per (l, s) pair over k, reduced at the end; no broadcasts.
//   outer form (a's columns run along L: g^T z, x^T u, and with the roles of a and b swapped,
//              z V^T): c += a[:, kk] (x) b[kk, :] for each kk, vectors along L times broadcast
//              elements of b, summed in c itself or in a packed (S, L) buffer.
// The long operand usually comes from memory (an activation written long before), so both forms
// prefetch it: the first pass over a tile prefetches ahead of itself, and the passes that reuse
// the tile from cache prefetch the next one. Each element of c is summed by one thread in one
// order whatever the thread count.
//
// Written with GCC vector extensions and included (by tensor/cpu/cpu_path_table.h) into the CPU
// paths that have these kernels (tensor/cpu/cpu_path_avx2.c, _avx512.c), which define first:
//   VEC                  floats per vector (8 or 16) and the vec type of VEC floats;
//   DOT_ROWS, OUTER_VECS the tile sizes that fit the path's vector registers (24 accumulators of
//                        the 32 AVX-512 registers; 8 and 12 of AVX2's 16).
// The entry point is narrow_sgemm, static: the path's table (cpu_path.h) exports it.
#include <string.h>

#include "tensor/cpu/cpu_kernels.h"

#define MIN_NARROW     16
#define MAX_NARROW     64
#define MIN_LONG       64  // below this (or a shorter k), OpenBLAS's own overheads are no worse
#define DOT_COLS       4   // dot form: DOT_ROWS rows of a x 4 columns of b
#define DOT_MIN_K      256 // shorter rows spend too long in the final reductions
#define DOT_PREFETCH   128 // floats ahead along a row (8 cache lines)
#define OUTER_COLS     4   // outer form: OUTER_VECS vectors along L x 4 elements of b
#define OUTER_KBLOCK   128 // rows of a per pass, so a tile's slice of a stays in cache
#define OUTER_PREFETCH 8   // rows ahead
#define OUTER_BAND     16  // S tiles per band (64 rows of c) when k is short
#define PARALLEL_MIN   ((int64_t)1 << 22) // multiply-adds worth waking a second thread

// Keeps a loaded vector in a register: otherwise GCC folds the load into each of the FMAs that
// read it, and the dot form's loop turns from 10 loads per 24 FMAs into 28 (load-bound).
#define KEEP_IN_REGISTER(x) __asm__("" : "+v"(x))

// A matrix read by element strides: (i, j) lives at p[i * rs + j * cs].
typedef struct {
    const float *p;
    int64_t rs, cs;
} strided;

static int64_t round_up(int64_t x, int64_t to) {
    return (x + to - 1) / to * to;
}

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

// m (rows, cols) copied into a contiguous (rows_p, cols_p) buffer, the padding zero. The buffer
// comes from the CPU block cache: no page faults once the cache holds it.
static tensor *pack(strided m, int64_t rows, int64_t cols, int64_t rows_p, int64_t cols_p) {
    tensor *t = tensor_empty(PETAL_F32, SHAPE(rows_p, cols_p));
    float *out = tensor_data(t);
    memset(out, 0, (size_t)(rows_p * cols_p) * sizeof(float));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) out[i * cols_p + j] = m.p[i * m.rs + j * m.cs];
    return t;
}

// c[i] = alpha * v + beta * c[i]; beta = 0 never reads c (it may hold garbage).
static void put(float *c, float v, float alpha, float beta) {
    *c = beta == 0.0f ? alpha * v : alpha * v + beta * *c;
}

// ---- dot form ----

// out[j] = the sum of v[j]'s lanes, for four vectors at once (a shuffle tree: 13 operations
// instead of 4 x 8 for 16 lanes).
static void reduce4(const vec *v, float *out) {
#if VEC == 16
    vec ab = __builtin_shufflevector(v[0], v[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22,
                                     23) +
             __builtin_shufflevector(v[0], v[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28,
                                     29, 30, 31);
    vec cd = __builtin_shufflevector(v[2], v[3], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22,
                                     23) +
             __builtin_shufflevector(v[2], v[3], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28,
                                     29, 30, 31);
    // lanes: a 0..3, b 4..7, c 8..11, d 12..15 (each the sum of 4 partials)
    vec q =
        __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
        __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    q += __builtin_shufflevector(q, q, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    q += __builtin_shufflevector(q, q, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    for (int j = 0; j < 4; j++) out[j] = q[4 * j];
#elif VEC == 8
    // lanes: a 0..3, b 4..7 and c 0..3, d 4..7
    vec ab = __builtin_shufflevector(v[0], v[1], 0, 1, 2, 3, 8, 9, 10, 11) +
             __builtin_shufflevector(v[0], v[1], 4, 5, 6, 7, 12, 13, 14, 15);
    vec cd = __builtin_shufflevector(v[2], v[3], 0, 1, 2, 3, 8, 9, 10, 11) +
             __builtin_shufflevector(v[2], v[3], 4, 5, 6, 7, 12, 13, 14, 15);
    // lanes: a 0..1, b 2..3, c 4..5, d 6..7
    vec q = __builtin_shufflevector(ab, cd, 0, 1, 4, 5, 8, 9, 12, 13) +
            __builtin_shufflevector(ab, cd, 2, 3, 6, 7, 10, 11, 14, 15);
    q += __builtin_shufflevector(q, q, 1, 0, 3, 2, 5, 4, 7, 6);
    for (int j = 0; j < 4; j++) out[j] = q[2 * j];
#else
#error "cpu_gemm_narrow.h: VEC must be 8 or 16"
#endif
}

// Rows l0 .. l0 + rows - 1 (rows <= DOT_ROWS) and columns s0 .. s0 + DOT_COLS - 1 of c. bt holds
// b transposed, (S padded, k). A short tile repeats its last row and stores only the valid ones.
static void dot_tile(strided a, const float *bt, int64_t k, int64_t l0, int64_t rows, int64_t n_l,
                     int64_t s0, int64_t n_s, float *c, int64_t crs, int64_t ccs, float alpha,
                     float beta) {
    const float *ar[DOT_ROWS], *br[DOT_COLS];
    const float *next = l0 + DOT_ROWS + DOT_ROWS <= n_l ? a.p + (l0 + DOT_ROWS) * a.rs : NULL;
    for (int r = 0; r < DOT_ROWS; r++) ar[r] = a.p + (l0 + min64(r, rows - 1)) * a.rs;
    for (int j = 0; j < DOT_COLS; j++) br[j] = bt + (s0 + j) * k;
    vec acc[DOT_ROWS][DOT_COLS];
#pragma GCC unroll 6
    for (int r = 0; r < DOT_ROWS; r++)
#pragma GCC unroll 4
        for (int j = 0; j < DOT_COLS; j++) acc[r][j] = (vec){0};
    int64_t kk = 0;
    for (; kk + VEC <= k; kk += VEC) {
        vec b[DOT_COLS];
#pragma GCC unroll 4
        for (int j = 0; j < DOT_COLS; j++) b[j] = *(const vec *)(br[j] + kk);
        if (s0 == 0) // the first pass over these rows brings them in from memory
#pragma GCC unroll 6
            for (int r = 0; r < DOT_ROWS; r++) __builtin_prefetch(ar[r] + kk + DOT_PREFETCH);
        else if (next && s0 / DOT_COLS <= DOT_ROWS) // pass j brings in row j - 1 of the next tile
            __builtin_prefetch(next + (s0 / DOT_COLS - 1) * a.rs + kk, 0, 2);
        vec x[DOT_ROWS];
#pragma GCC unroll 6
        for (int r = 0; r < DOT_ROWS; r++) {
            x[r] = *(const vec *)(ar[r] + kk);
            KEEP_IN_REGISTER(x[r]);
        }
#pragma GCC unroll 6
        for (int r = 0; r < DOT_ROWS; r++)
#pragma GCC unroll 4
            for (int j = 0; j < DOT_COLS; j++) acc[r][j] += x[r] * b[j];
    }
    float sum[DOT_ROWS][DOT_COLS];
    for (int r = 0; r < DOT_ROWS; r++) reduce4(acc[r], sum[r]);
    for (; kk < k; kk++)
        for (int r = 0; r < DOT_ROWS; r++)
            for (int j = 0; j < DOT_COLS; j++) sum[r][j] += ar[r][kk] * br[j][kk];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < DOT_COLS && s0 + j < n_s; j++)
            put(c + (l0 + r) * crs + (s0 + j) * ccs, sum[r][j], alpha, beta);
}

static void dot_run(int64_t n_l, int64_t n_s, int64_t k, float alpha, strided a, strided b,
                    float beta, float *c, int64_t crs, int64_t ccs) {
    int64_t sp = round_up(n_s, DOT_COLS);
    tensor *packed = pack((strided){b.p, b.cs, b.rs}, n_s, k, sp, k); // (sp, k)
    const float *bt = tensor_data(packed);
    int64_t tiles = (n_l + DOT_ROWS - 1) / DOT_ROWS;
#pragma omp parallel for schedule(static) if (n_l * n_s * k >= PARALLEL_MIN)
    for (int64_t t = 0; t < tiles; t++) {
        int64_t l0 = t * DOT_ROWS;
        for (int64_t s0 = 0; s0 < sp; s0 += DOT_COLS)
            dot_tile(a, bt, k, l0, min64(DOT_ROWS, n_l - l0), n_l, s0, n_s, c, crs, ccs, alpha,
                     beta);
    }
    tensor_free(packed);
}

// ---- outer form ----

// Where the outer form sums: rows s < rows of an (S, L) matrix with row stride ld, either a
// scratch buffer or c itself (when c's rows are the S side and alpha = 1, beta = 0 or 1).
typedef struct {
    float *p;
    int64_t ld, rows;
    bool load_first; // the first k block adds to what is there (c with beta = 1)
} sums;

// Columns l0 .. l0 + nv * VEC - 1 and rows s0 .. s0 + OUTER_COLS - 1 of the sums, over k rows
// k0 .. k1 - 1. bp holds b as (k, S padded with zeros).
static inline __attribute__((always_inline)) void outer_tile(int nv, strided a, const float *bp,
                                                             int64_t sp, int64_t k0, int64_t k1,
                                                             int64_t k_end, int64_t l0, int64_t s0,
                                                             sums out) {
    vec acc[OUTER_COLS][OUTER_VECS];
    bool load = k0 > 0 || out.load_first;
    if (load) // the next tile's rows of the sums, which come from memory when they are c
#pragma GCC unroll 4
        for (int s = 0; s < OUTER_COLS; s++)
#pragma GCC unroll 6
            for (int v = 0; v < nv; v++)
                __builtin_prefetch(out.p + (s0 + OUTER_COLS + s) * out.ld + l0 + v * VEC);
#pragma GCC unroll 4
    for (int s = 0; s < OUTER_COLS; s++)
#pragma GCC unroll 6
        for (int v = 0; v < nv; v++)
            acc[s][v] = load && s0 + s < out.rows
                            ? *(vec *)(out.p + (s0 + s) * out.ld + l0 + v * VEC)
                            : (vec){0};
    for (int64_t kk = k0; kk < k1; kk++) {
        const float *ak = a.p + kk * a.cs + l0, *bk = bp + kk * sp + s0;
        vec x[OUTER_VECS];
#pragma GCC unroll 6
        for (int v = 0; v < nv; v++) x[v] = *(const vec *)(ak + v * VEC);
        if (s0 == 0 && kk + OUTER_PREFETCH < k1) // the first pass brings the block in
#pragma GCC unroll 6
            for (int v = 0; v < nv; v++) __builtin_prefetch(ak + OUTER_PREFETCH * a.cs + v * VEC);
        else if (s0 > 0 && s0 / OUTER_COLS <= nv && kk + OUTER_KBLOCK < k_end)
            // pass j over the block brings in vector j - 1 of the next block's rows
            __builtin_prefetch(ak + OUTER_KBLOCK * a.cs + (s0 / OUTER_COLS - 1) * VEC, 0, 2);
#pragma GCC unroll 4
        for (int s = 0; s < OUTER_COLS; s++) {
            float y = bk[s];
#pragma GCC unroll 6
            for (int v = 0; v < nv; v++) acc[s][v] += y * x[v];
        }
    }
#pragma GCC unroll 4
    for (int s = 0; s < OUTER_COLS; s++)
        if (s0 + s < out.rows)
#pragma GCC unroll 6
            for (int v = 0; v < nv; v++)
                *(vec *)(out.p + (s0 + s) * out.ld + l0 + v * VEC) = acc[s][v];
}

// outer_tile with nv fixed at compile time (the accumulators then live in registers), by nv.
typedef void (*outer_tile_fn)(strided a, const float *bp, int64_t sp, int64_t k0, int64_t k1,
                              int64_t k_end, int64_t l0, int64_t s0, sums out);
#define OUTER_TILE_NV(nv)                                                                          \
    static void outer_tile_##nv(strided a, const float *bp, int64_t sp, int64_t k0, int64_t k1,    \
                                int64_t k_end, int64_t l0, int64_t s0, sums out) {                 \
        outer_tile(nv, a, bp, sp, k0, k1, k_end, l0, s0, out);                                     \
    }
OUTER_TILE_NV(1)
OUTER_TILE_NV(2)
OUTER_TILE_NV(3)
#if OUTER_VECS == 6
OUTER_TILE_NV(4)
OUTER_TILE_NV(5)
OUTER_TILE_NV(6)
static const outer_tile_fn outer_tiles[OUTER_VECS + 1] = {
    NULL, outer_tile_1, outer_tile_2, outer_tile_3, outer_tile_4, outer_tile_5, outer_tile_6};
#elif OUTER_VECS == 3
static const outer_tile_fn outer_tiles[OUTER_VECS + 1] = {NULL, outer_tile_1, outer_tile_2,
                                                          outer_tile_3};
#else
#error "cpu_gemm_narrow.h: OUTER_VECS must be 3 or 6"
#endif

// Rows s_begin .. s_end - 1 (multiples of OUTER_COLS) of one tile of L columns (nv vectors,
// 1..OUTER_VECS), over k rows k0 .. k1 - 1.
static void outer_block(int nv, strided a, const float *bp, int64_t sp, int64_t k0, int64_t k1,
                        int64_t k, int64_t l0, int64_t s_begin, int64_t s_end, sums out) {
    for (int64_t s0 = s_begin; s0 < s_end; s0 += OUTER_COLS)
        outer_tiles[nv](a, bp, sp, k0, k1, k, l0, s0, out);
}

// n_l is a multiple of VEC and a.rs == 1. The sums go straight into c when its rows are the S
// side (crs == 1) and alpha = 1, beta = 0 or 1; otherwise into a scratch (S, L) matrix that is
// then added into c. A long k runs tile by tile of L, k block by k block, so each block of a is
// read from memory once; a short one (the rank-R update z V^T, where S is long) runs band by band
// of S, so each row of the sums is finished in one go.
static void outer_run(int64_t n_l, int64_t n_s, int64_t k, float alpha, strided a, strided b,
                      float beta, float *c, int64_t crs, int64_t ccs) {
    int64_t sp = round_up(n_s, OUTER_COLS), width = OUTER_VECS * VEC;
    tensor *packed = pack(b, k, n_s, k, sp); // (k, sp)
    bool direct = crs == 1 && alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    tensor *scratch = direct ? NULL : tensor_empty(PETAL_F32, SHAPE(sp, n_l));
    sums out =
        direct ? (sums){c, ccs, n_s, beta == 1.0f} : (sums){tensor_data(scratch), n_l, sp, false};
    const float *bp = tensor_data(packed);
    int64_t tiles = (n_l + width - 1) / width, band = OUTER_COLS * OUTER_BAND;
    int64_t bands = (sp + band - 1) / band;
    bool threads = n_l * n_s * k >= PARALLEL_MIN;
    if (k <= OUTER_KBLOCK) {
#pragma omp parallel for schedule(static) if (threads)
        for (int64_t i = 0; i < bands; i++)
            for (int64_t l0 = 0; l0 < n_l; l0 += width)
                outer_block((int)(min64(width, n_l - l0) / VEC), a, bp, sp, 0, k, k, l0, i * band,
                            min64(sp, (i + 1) * band), out);
    } else {
#pragma omp parallel for schedule(static) if (threads)
        for (int64_t t = 0; t < tiles; t++)
            for (int64_t k0 = 0; k0 < k; k0 += OUTER_KBLOCK)
                outer_block((int)(min64(width, n_l - t * width) / VEC), a, bp, sp, k0,
                            min64(k, k0 + OUTER_KBLOCK), k, t * width, 0, sp, out);
    }
    if (!direct)
#pragma omp parallel for schedule(static) if (threads)
        for (int64_t l = 0; l < n_l; l++)
            for (int64_t s = 0; s < n_s; s++)
                put(c + l * crs + s * ccs, out.p[s * n_l + l], alpha, beta);
    tensor_free(scratch);
    tensor_free(packed);
}

// ---- entry ----

// c (n_l, n_s) = alpha * a @ b + beta * c with n_l long and n_s narrow; false if no form fits.
static bool narrow_run(int64_t n_l, int64_t n_s, int64_t k, float alpha, strided a, strided b,
                       float beta, float *c, int64_t crs, int64_t ccs) {
    if (a.cs == 1 && k >= DOT_MIN_K)
        dot_run(n_l, n_s, k, alpha, a, b, beta, c, crs, ccs);
    else if (a.rs == 1 && n_l % VEC == 0)
        outer_run(n_l, n_s, k, alpha, a, b, beta, c, crs, ccs);
    else
        return false;
    return true;
}

static bool narrow_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                         float *c, int64_t ldc) {
    strided sa = trans_a ? (strided){a, 1, lda} : (strided){a, lda, 1};
    strided sb = trans_b ? (strided){b, 1, ldb} : (strided){b, ldb, 1};
    // A short inner dimension (z V^T, du U): the outer form along c's rows, b packed as (k, n).
    if (k >= 1 && k <= MAX_NARROW && m >= MIN_LONG && n >= MIN_LONG && n % VEC == 0) {
        tensor *packed = pack(sb, k, n, k, n);
        strided bt = {tensor_data(packed), 1, n}; // b^T read by element strides
        outer_run(n, m, k, alpha, bt, (strided){sa.p, sa.cs, sa.rs}, beta, c, 1, ldc);
        tensor_free(packed);
        return true;
    }
    if (k < MIN_LONG) return false;
    if (n >= MIN_NARROW && n <= MAX_NARROW && m >= MIN_LONG)
        return narrow_run(m, n, k, alpha, sa, sb, beta, c, ldc, 1);
    if (m >= MIN_NARROW && m <= MAX_NARROW && n >= MIN_LONG) // as c^T = b^T a^T
        return narrow_run(n, m, k, alpha, (strided){sb.p, sb.cs, sb.rs},
                          (strided){sa.p, sa.cs, sa.rs}, beta, c, 1, ldc);
    return false;
}
