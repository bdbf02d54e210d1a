// Fused scaled-dot-product attention on the CPU (f32), forward and backward, one head at a time.
//
// A head's score matrix fits in L2 (197 x 208 floats in a ViT-B), so no online softmax is needed:
// each thread computes a whole head's scores into its own buffer, turns them into probabilities
// in place and multiplies them by v while they are still in cache; the backward rebuilds them the
// same way. The ops/attention.c GEMM path instead wrote P (B, H, T, S) to memory between an
// OpenBLAS product, a softmax pass and a second product, and each small product paid OpenBLAS's
// packing and edge tiles. The products here run on the CPU
// path's micro-kernels (tensor/cpu/cpu_path_attention.h); the formulas are the unfused op's:
//   forward   S = scale q k^T + mask (-inf where causal hides a key),  P = softmax(S),
//             lse = log sum exp S,  o = dropout(P) v
//   backward  P rebuilt as in the forward,  dv = dropout(P)^T dO,  dP = dropout(dO v^T),
//             dS = P (dP - rowsum(dP P)),  dq = scale dS k,  dk = scale dS^T q
// with the unfused op's dropout mask (element (b, h, i, j) of P reads counter
// attn_drop_index, tensor/attention_tile.h). Each head is computed by one thread in one order,
// so the results do not depend on the thread count.
#include <string.h>

#include "tensor/attention_tile.h"
#include "tensor/cpu/cpu_kernels.h"
#include "tensor/cpu/cpu_path.h"
#include "tensor/tensor.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int64_t round_up(int64_t x, int64_t to) {
    return (x + to - 1) / to * to;
}

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

// One head-dim operand (B, H, rows, dim) with its last dim contiguous.
typedef struct {
    float *p;
    attn_strides st;
} head_view;

static head_view view_of(const tensor *t) {
    return (head_view){(float *)t->storage->data + t->offset,
                       {t->strides[0], t->strides[1], t->strides[2]}};
}

static float *head_rows(head_view v, int64_t b, int64_t h) {
    return v.p + attn_offset(v.st, b, h, 0);
}

// What every head of one call shares.
typedef struct {
    const cpu_path_kernels *kern;
    int64_t b, h, t, s, d, dv;
    int64_t s_pad, w_pad; // a score row's length in the buffers; the padded head-dim width
    head_view q, k, v, o, go, gq, gk, gv;
    float *lse;        // (B, H, T)
    const float *mask; // NULL: no mask
    int64_t mst[4];    // its strides broadcast to (B, H, T, S)
    const attention_params *p;
    float *scratch; // per_thread floats for each thread
    int64_t per_thread;
} attn_job;

// One thread's buffers, carved from the job's scratch.
typedef struct {
    float *p, *dp, *pd; // (T, s_pad): P, dP (then dS), dropout(P)
    float *bt;          // (max(D, Dv), s_pad): k^T or v^T
    float *bp, *cp;     // (max(T, S), w_pad): an operand and an output of a ragged width
    float *mrow;        // (s_pad): a mask row gathered from its strides
    float *keep;        // (T, S): dropout's factors for the head (attn_keep)
} attn_buffers;

// Carves one thread's buffers from w (NULL: only counts); returns the floats they take.
static int64_t buffers_carve(const attn_job *j, float *w, attn_buffers *b) {
    int64_t score = j->t * j->s_pad, ragged = max64(j->t, j->s) * j->w_pad;
    int64_t sizes[] = {score,  score,  score,    max64(j->d, j->dv) * j->s_pad,
                       ragged, ragged, j->s_pad, j->t * j->s};
    float **parts[] = {&b->p, &b->dp, &b->pd, &b->bt, &b->bp, &b->cp, &b->mrow, &b->keep};
    int64_t at = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        if (w) *parts[i] = w + at;
        at += sizes[i];
    }
    return at;
}

static int64_t buffers_size(const attn_job *j) {
    attn_buffers unused;
    return buffers_carve(j, NULL, &unused);
}

static attn_buffers buffers_of(const attn_job *j, int thread) {
    attn_buffers b;
    buffers_carve(j, j->scratch + thread * j->per_thread, &b);
    return b;
}

// c (m, n) = alpha * A B by tiles of the path's micro-kernel; n is a multiple of the vector
// width. A's rows (rows form) or columns (panel form) are `as` apart.
static void tiles(const attn_job *j, bool panel, int64_t m, int64_t n, int64_t k, const float *a,
                  int64_t as, const float *b, int64_t ldb, float alpha, float *c, int64_t ldc) {
    const cpu_path_kernels *kern = j->kern;
    cpu_attn_tile_fn fn = panel ? kern->attn_panel_tile : kern->attn_rows_tile;
    int64_t lanes = kern->vec_width, mr = kern->attn_mr;
    for (int64_t c0 = 0; c0 < n; c0 += kern->attn_nv * lanes) {
        int64_t nv = (n - c0) / lanes < kern->attn_nv ? (n - c0) / lanes : kern->attn_nv;
        for (int64_t r0 = 0; r0 < m; r0 += mr)
            fn(k, a + (panel ? r0 : r0 * as), as, b + c0, ldb, alpha, c + r0 * ldc + c0, ldc,
               m - r0 < mr ? m - r0 : mr, (int)nv);
    }
}

// c (m, n) = alpha * A B with B's k rows of n floats ldb apart and c's rows ldc apart (a head's
// operand and output in place); through the padded buffers when n is not a multiple of the
// vector width.
static void product(const attn_job *j, const attn_buffers *w, bool panel, int64_t m, int64_t n,
                    int64_t k, const float *a, int64_t as, const float *b, int64_t ldb, float alpha,
                    float *c, int64_t ldc) {
    int64_t np = round_up(n, j->kern->vec_width);
    if (np == n) {
        tiles(j, panel, m, n, k, a, as, b, ldb, alpha, c, ldc);
        return;
    }
    for (int64_t kk = 0; kk < k; kk++) {
        memcpy(w->bp + kk * np, b + kk * ldb, (size_t)n * sizeof(float));
        memset(w->bp + kk * np + n, 0, (size_t)(np - n) * sizeof(float));
    }
    tiles(j, panel, m, np, k, a, as, w->bp, np, alpha, w->cp, np);
    for (int64_t r = 0; r < m; r++) memcpy(c + r * ldc, w->cp + r * np, (size_t)n * sizeof(float));
}

// Row i's mask (S floats) for head (b, h), or NULL without a mask.
static const float *mask_row(const attn_job *j, const attn_buffers *w, int64_t b, int64_t h,
                             int64_t i) {
    if (!j->mask) return NULL;
    const float *m = j->mask + attn_mask_offset(j->mst, b, h, i, 0);
    if (j->mst[3] == 1) return m;
    for (int64_t c = 0; c < j->s; c++) w->mrow[c] = m[c * j->mst[3]];
    return w->mrow;
}

// The keys [0, visible) query i sees.
static int64_t visible(const attn_job *j, int64_t i) {
    if (!j->p->causal) return j->s;
    int64_t end = i + (j->s - j->t) + 1;
    return end < 0 ? 0 : end > j->s ? j->s : end;
}

// Dropout's factors for head (b, h) into w->keep, the unfused op's decisions.
static void head_keep(const attn_job *j, const attn_buffers *w, int64_t b, int64_t h) {
    int64_t e0 = attn_drop_index(b, h, 0, 0, j->h, j->t, j->s);
    j->kern->attn_keep(w->keep, j->t * j->s, e0, j->p->dropout, j->p->rng);
}

// dst[c] = dropout(src[c]) for the S elements of row i: what the unfused dropout writes, x / (1 -
// p) or 0 (0 for a dropped NaN too).
static void drop_row(const attn_job *j, const attn_buffers *w, float *dst, const float *src,
                     int64_t i) {
    const float *keep = w->keep + i * j->s;
    for (int64_t c = 0; c < j->s; c++) dst[c] = keep[c] != 0 ? src[c] * keep[c] : 0.0f;
}

// P of head (b, h) into w->p: the scores scale q k^T + mask, then their softmax; the forward
// writes the rows' log-sum-exp into lse (the backend's contract; the backward rebuilds P by the
// same steps, the same bits, rather than as exp(S - lse), whose rounding grows with |lse|).
static void head_probs(const attn_job *j, const attn_buffers *w, int64_t b, int64_t h,
                       bool forward) {
    const cpu_path_kernels *kern = j->kern;
    kern->attn_transpose(w->bt, j->s_pad, head_rows(j->k, b, h), j->k.st.row, j->s, j->d);
    tiles(j, false, j->t, j->s_pad, j->d, head_rows(j->q, b, h), j->q.st.row, w->bt, j->s_pad, 1.0f,
          w->p, j->s_pad);
    float *lse = j->lse + (b * j->h + h) * j->t, scale = (float)j->p->scale;
    for (int64_t i = 0; i < j->t; i++) {
        float l = kern->attn_softmax_row(w->p + i * j->s_pad, j->s, visible(j, i), scale,
                                         mask_row(j, w, b, h, i));
        if (forward) lse[i] = l;
    }
}

static void head_forward(const attn_job *j, const attn_buffers *w, int64_t b, int64_t h) {
    head_probs(j, w, b, h, true);
    if (j->p->dropout > 0) {
        head_keep(j, w, b, h);
        for (int64_t i = 0; i < j->t; i++)
            drop_row(j, w, w->p + i * j->s_pad, w->p + i * j->s_pad, i);
    }
    product(j, w, false, j->t, j->dv, j->s, w->p, j->s_pad, head_rows(j->v, b, h), j->v.st.row,
            1.0f, head_rows(j->o, b, h), j->o.st.row);
}

static void head_backward(const attn_job *j, const attn_buffers *w, int64_t b, int64_t h) {
    const cpu_path_kernels *kern = j->kern;
    int64_t sp = j->s_pad;
    head_probs(j, w, b, h, false);
    const float *pd = w->p; // dropout(P)
    if (j->p->dropout > 0) {
        head_keep(j, w, b, h);
        for (int64_t i = 0; i < j->t; i++) {
            drop_row(j, w, w->pd + i * sp, w->p + i * sp, i);
            memset(w->pd + i * sp + j->s, 0, (size_t)(sp - j->s) * sizeof(float));
        }
        pd = w->pd;
    }
    const float *go = head_rows(j->go, b, h), *q = head_rows(j->q, b, h);
    const float *k = head_rows(j->k, b, h);
    product(j, w, true, j->s, j->dv, j->t, pd, sp, go, j->go.st.row, 1.0f, head_rows(j->gv, b, h),
            j->gv.st.row); // dv = dropout(P)^T dO
    kern->attn_transpose(w->bt, sp, head_rows(j->v, b, h), j->v.st.row, j->s, j->dv);
    tiles(j, false, j->t, sp, j->dv, go, j->go.st.row, w->bt, sp, 1.0f, w->dp, sp); // dO v^T
    for (int64_t i = 0; i < j->t; i++) {
        float *row = w->dp + i * sp;
        if (j->p->dropout > 0) drop_row(j, w, row, row, i);
        kern->softmax_backward_row(row, row, w->p + i * sp, j->s, false); // dS
    }
    float scale = (float)j->p->scale;
    product(j, w, false, j->t, j->d, j->s, w->dp, sp, k, j->k.st.row, scale, head_rows(j->gq, b, h),
            j->gq.st.row); // dq = scale dS k
    product(j, w, true, j->s, j->d, j->t, w->dp, sp, q, j->q.st.row, scale, head_rows(j->gk, b, h),
            j->gk.st.row); // dk = scale dS^T q
}

static attn_job job_of(const tensor *q, const tensor *k, const tensor *v, const tensor *lse,
                       const tensor *mask, const attention_params *p) {
    PETAL_CHECK(q->dtype == PETAL_F32 && !p->round_bf16,
                "cpu attention: the fused CPU kernels take f32 at f32 precision only");
    attn_job j = {.kern = cpu_path_kernels_active(),
                  .b = q->shape[0],
                  .h = q->shape[1],
                  .t = q->shape[2],
                  .s = k->shape[2],
                  .d = q->shape[3],
                  .dv = v->shape[3],
                  .q = view_of(q),
                  .k = view_of(k),
                  .v = view_of(v),
                  .lse = (float *)lse->storage->data + lse->offset,
                  .p = p};
    int64_t lanes = j.kern->vec_width;
    // The panel form reads a column of P for the rows of its last tile too.
    j.s_pad = round_up(round_up(j.s, j.kern->attn_mr), lanes);
    j.w_pad = round_up(max64(j.d, j.dv), lanes);
    if (mask) {
        j.mask = (const float *)mask->storage->data + mask->offset;
        attn_mask_strides(mask->ndim, mask->shape, mask->strides, j.mst);
    }
    j.per_thread = buffers_size(&j);
    return j;
}

typedef void (*head_fn)(const attn_job *j, const attn_buffers *w, int64_t b, int64_t h);

// Every head on the thread team, each thread with its own buffers.
static void run_heads(attn_job *j, head_fn fn) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int64_t heads = j->b * j->h;
    if (heads == 0 || j->t == 0) return;
    tensor *scratch = tensor_empty(PETAL_F32, SHAPE(threads * j->per_thread));
    j->scratch = tensor_data(scratch);
    bool parallel = heads > 1 && heads * j->t * j->s * (j->d + j->dv) >= CPU_PARALLEL_GRAIN;
    (void)parallel; // read only by the pragma, which a build without OpenMP ignores
#pragma omp parallel for schedule(dynamic) if (parallel)
    for (int64_t bh = 0; bh < heads; bh++) {
        int thread = 0;
#ifdef _OPENMP
        thread = omp_get_thread_num();
#endif
        attn_buffers w = buffers_of(j, thread);
        fn(j, &w, bh / j->h, bh % j->h);
    }
    tensor_free(scratch);
}

void cpu_attention(tensor *o, tensor *lse, const tensor *q, const tensor *k, const tensor *v,
                   const tensor *mask, const attention_params *p) {
    attn_job j = job_of(q, k, v, lse, mask, p);
    j.o = view_of(o);
    run_heads(&j, head_forward);
}

void cpu_attention_backward(tensor *gq, tensor *gk, tensor *gv, const tensor *go, const tensor *q,
                            const tensor *k, const tensor *v, const tensor *o, const tensor *lse,
                            const tensor *mask, const attention_params *p) {
    (void)o; // NULL (attention_backward_reads_o is off): D_i is summed from dP and P, as the
             // unfused softmax backward does
    attn_job j = job_of(q, k, v, lse, mask, p);
    j.go = view_of(go);
    j.gq = view_of(gq);
    j.gk = view_of(gk);
    j.gv = view_of(gv);
    run_heads(&j, head_backward);
}
