#include "tests/ops/reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "tensor/philox.h"

// ---- shapes and indices ----

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

static void alloc_out(ref_t *o, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > PETAL_MAX_DIMS) abort();
    o->ndim = ndim;
    if (ndim > 0) memcpy(o->shape, shape, (size_t)ndim * sizeof *shape);
    o->v = calloc((size_t)(numel(ndim, shape) + 1), sizeof(double));
}

static void unravel(int64_t i, int ndim, const int64_t *shape, int64_t *idx) {
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
}

static int64_t ravel(const int64_t *idx, int ndim, const int64_t *shape) {
    int64_t i = 0;
    for (int d = 0; d < ndim; d++) i = i * shape[d] + idx[d];
    return i;
}

// The element of a that broadcasts to output index idx (of out_ndim dims).
static double bcast(const ref_t *a, const int64_t *idx, int out_ndim) {
    int64_t i = 0;
    for (int d = 0; d < a->ndim; d++) {
        int64_t k = idx[out_ndim - a->ndim + d];
        i = i * a->shape[d] + (a->shape[d] == 1 ? 0 : k);
    }
    return a->v[i];
}

static int broadcast_shape(const ref_t *a, const ref_t *b, int64_t *shape) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < n; d++) {
        int64_t x = d < n - a->ndim ? 1 : a->shape[d - (n - a->ndim)];
        int64_t y = d < n - b->ndim ? 1 : b->shape[d - (n - b->ndim)];
        shape[d] = x == 1 ? y : x;
    }
    return n;
}

static int norm_dim(int dim, int ndim) {
    return dim < 0 ? dim + ndim : dim;
}

// ---- element-wise ----

typedef double (*fn2)(double, double, const op_case *);
typedef double (*fn1)(double, const op_case *);

static void binary(const ref_t *a, const ref_t *b, ref_t *o, fn2 f, const op_case *c) {
    int64_t shape[PETAL_MAX_DIMS] = {0}, idx[PETAL_MAX_DIMS] = {0};
    int n = broadcast_shape(a, b, shape);
    alloc_out(o, n, shape);
    for (int64_t i = 0; i < numel(n, shape); i++) {
        unravel(i, n, shape, idx);
        o->v[i] = f(bcast(a, idx, n), bcast(b, idx, n), c);
    }
}

static void unary(const ref_t *a, ref_t *o, fn1 f, const op_case *c) {
    alloc_out(o, a->ndim, a->shape);
    for (int64_t i = 0; i < numel(a->ndim, a->shape); i++) o->v[i] = f(a->v[i], c);
}

#define F2(name, expr)                                                                             \
    static double name(double a, double b, const op_case *c) {                                     \
        (void)c;                                                                                   \
        return expr;                                                                               \
    }
#define F1(name, expr)                                                                             \
    static double name(double x, const op_case *c) {                                               \
        (void)c;                                                                                   \
        return expr;                                                                               \
    }
F2(r_add, a + b)
F2(r_sub, a - b)
F2(r_mul, a *b)
F2(r_div, a / b)
F2(r_eq, a == b)
F2(r_ne, a != b)
F2(r_lt, a < b)
F2(r_le, a <= b)
F2(r_gt, a > b)
F2(r_ge, a >= b)
F2(r_add_gelu, 0.5 * (a + b) * (1 + erf((a + b) / sqrt(2.0))))
F1(r_add_scalar, x + c->fparam[0])
F1(r_mul_scalar, x * c->fparam[0])
F1(r_div_scalar, x / c->fparam[0])
F1(r_neg, -x)
F1(r_exp, exp(x))
F1(r_log, log(x))
F1(r_sqrt, sqrt(x))
F1(r_rsqrt, 1 / sqrt(x))
F1(r_abs, fabs(x))
F1(r_tanh, tanh(x))
F1(r_sigmoid, 1 / (1 + exp(-x)))
F1(r_relu, x > 0 ? x : 0)
F1(r_gelu, 0.5 * x * (1 + erf(x / sqrt(2.0))))
F1(r_gelu_tanh, 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))))
F1(r_pow, pow(x, c->fparam[0]))
F1(r_clamp, fmin(fmax(x, c->fparam[0]), c->fparam[1]))

static void where3(const ref_t *cond, const ref_t *a, const ref_t *b, ref_t *o) {
    int64_t ab[PETAL_MAX_DIMS] = {0}, shape[PETAL_MAX_DIMS], idx[PETAL_MAX_DIMS];
    ref_t tmp = {.ndim = broadcast_shape(a, b, ab)};
    memcpy(tmp.shape, ab, sizeof ab);
    int n = broadcast_shape(cond, &tmp, shape);
    alloc_out(o, n, shape);
    for (int64_t i = 0; i < numel(n, shape); i++) {
        unravel(i, n, shape, idx);
        o->v[i] = bcast(cond, idx, n) != 0 ? bcast(a, idx, n) : bcast(b, idx, n);
    }
}

// ---- reductions over one dim ----

enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_LSE, R_ARGMAX, R_ARGMIN };

static void reduce(const ref_t *a, int dim, bool keepdim, int kind, ref_t *o) {
    dim = norm_dim(dim, a->ndim);
    int64_t shape[PETAL_MAX_DIMS] = {0}, idx[PETAL_MAX_DIMS] = {0};
    int n = 0;
    for (int d = 0; d < a->ndim; d++)
        if (d != dim || keepdim) shape[n++] = d == dim ? 1 : a->shape[d];
    alloc_out(o, n, shape);
    int64_t len = a->shape[dim];
    for (int64_t i = 0; i < numel(n, shape); i++) {
        // output index -> input index with dim = 0
        int64_t full[PETAL_MAX_DIMS] = {0};
        unravel(i, n, shape, idx);
        for (int d = 0, j = 0; d < a->ndim; d++) full[d] = d == dim ? 0 : idx[keepdim ? d : j++];
        double acc = kind == R_MAX || kind == R_ARGMAX
                         ? -INFINITY
                         : (kind == R_MIN || kind == R_ARGMIN ? INFINITY : 0);
        int64_t best = 0;
        double m = -INFINITY;
        for (int64_t r = 0; r < len; r++) {
            full[dim] = r;
            m = fmax(m, a->v[ravel(full, a->ndim, a->shape)]);
        }
        for (int64_t r = 0; r < len; r++) {
            full[dim] = r;
            double x = a->v[ravel(full, a->ndim, a->shape)];
            switch (kind) {
            case R_SUM:
            case R_MEAN:
                acc += x;
                break;
            case R_LSE:
                acc += exp(x - m);
                break;
            case R_MAX:
            case R_ARGMAX:
                if (x > acc) {
                    acc = x;
                    best = r;
                }
                break;
            case R_MIN:
            case R_ARGMIN:
                if (x < acc) {
                    acc = x;
                    best = r;
                }
                break;
            }
        }
        if (kind == R_MEAN) acc /= (double)len;
        if (kind == R_LSE) acc = m + log(acc);
        o->v[i] = kind == R_ARGMAX || kind == R_ARGMIN ? (double)best : acc;
    }
}

static int cmp_desc(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a < b) - (a > b);
}

static void topk(const ref_t *a, int64_t k, bool largest, ref_t *o) {
    int64_t shape[PETAL_MAX_DIMS] = {0};
    memcpy(shape, a->shape, sizeof shape);
    int64_t n = a->shape[a->ndim - 1], rows = numel(a->ndim, a->shape) / n;
    shape[a->ndim - 1] = k;
    alloc_out(o, a->ndim, shape);
    double *row = malloc((size_t)n * sizeof *row);
    for (int64_t r = 0; r < rows; r++) {
        memcpy(row, a->v + r * n, (size_t)n * sizeof *row);
        qsort(row, (size_t)n, sizeof *row, cmp_desc);
        for (int64_t j = 0; j < k; j++) o->v[r * k + j] = largest ? row[j] : row[n - 1 - j];
    }
    free(row);
}

// ---- linear algebra ----

static void matmul(const ref_t *a, const ref_t *b, ref_t *o) {
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
    ref_t ab = {.ndim = a->ndim - 2}, bb = {.ndim = b->ndim - 2};
    memcpy(ab.shape, a->shape, sizeof ab.shape);
    memcpy(bb.shape, b->shape, sizeof bb.shape);
    int64_t shape[PETAL_MAX_DIMS] = {0}, idx[PETAL_MAX_DIMS] = {0};
    int nb = broadcast_shape(&ab, &bb, shape);
    shape[nb] = m;
    shape[nb + 1] = n;
    alloc_out(o, nb + 2, shape);
    for (int64_t bi = 0; bi < numel(nb, shape); bi++) {
        unravel(bi, nb, shape, idx);
        int64_t ia = 0, ib = 0;
        for (int d = 0; d < ab.ndim; d++)
            ia = ia * ab.shape[d] + (ab.shape[d] == 1 ? 0 : idx[nb - ab.ndim + d]);
        for (int d = 0; d < bb.ndim; d++)
            ib = ib * bb.shape[d] + (bb.shape[d] == 1 ? 0 : idx[nb - bb.ndim + d]);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++)
                    s += a->v[(ia * m + i) * k + p] * b->v[(ib * k + p) * n + j];
                o->v[(bi * m + i) * n + j] = s;
            }
    }
}

static void linear(const ref_t *x, const ref_t *w, const ref_t *b, ref_t *o) {
    int64_t in = w->shape[1], out = w->shape[0], rows = numel(x->ndim, x->shape) / in;
    int64_t shape[PETAL_MAX_DIMS] = {0};
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    alloc_out(o, x->ndim, shape);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < out; j++) {
            double s = b ? b->v[j] : 0;
            for (int64_t p = 0; p < in; p++) s += x->v[r * in + p] * w->v[j * in + p];
            o->v[r * out + j] = s;
        }
}

// o += sum_j z[..., j, :] v^T into outputs j * rows(v) ..
static void add_terms(const ref_t *z, const ref_t *v, ref_t *o) {
    int64_t out = o->shape[o->ndim - 1], part = v->shape[0], r = v->shape[1];
    int64_t rows = numel(o->ndim, o->shape) / out, m = out / part;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < m; j++)
            for (int64_t c = 0; c < part; c++) {
                double s = 0;
                for (int64_t p = 0; p < r; p++) s += z->v[(i * m + j) * r + p] * v->v[c * r + p];
                o->v[i * out + j * part + c] += s;
            }
}

// x W^T + the terms
static void linear_lowrank(const ref_t *x, const ref_t *w, const ref_t *z, const ref_t *v,
                           ref_t *o) {
    linear(x, w, NULL, o);
    add_terms(z, v, o);
}

// ---- views: every one is "out[idx] = a[map(idx)]" ----

static void same_values(const ref_t *a, ref_t *o, int ndim, const int64_t *shape) {
    alloc_out(o, ndim, shape);
    memcpy(o->v, a->v, (size_t)numel(ndim, shape) * sizeof(double));
}

// base + the terms
static void add_lowrank(const ref_t *base, const ref_t *z, const ref_t *v, ref_t *o) {
    same_values(base, o, base->ndim, base->shape);
    add_terms(z, v, o);
}

static void permute(const ref_t *a, const int *perm, ref_t *o) {
    int64_t shape[PETAL_MAX_DIMS] = {0}, idx[PETAL_MAX_DIMS] = {0}, src[PETAL_MAX_DIMS] = {0};
    for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[perm[d]];
    alloc_out(o, a->ndim, shape);
    for (int64_t i = 0; i < numel(a->ndim, shape); i++) {
        unravel(i, a->ndim, shape, idx);
        for (int d = 0; d < a->ndim; d++) src[perm[d]] = idx[d];
        o->v[i] = a->v[ravel(src, a->ndim, a->shape)];
    }
}

static void slice(const ref_t *a, int dim, int64_t start, int64_t end, int64_t step, bool select,
                  ref_t *o) {
    dim = norm_dim(dim, a->ndim);
    int64_t len = a->shape[dim];
    if (start < 0) start += len;
    if (end < 0) end += len;
    if (end > len) end = len;
    int64_t shape[PETAL_MAX_DIMS] = {0}, idx[PETAL_MAX_DIMS] = {0}, src[PETAL_MAX_DIMS] = {0};
    int n = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (d != dim)
            shape[n++] = a->shape[d];
        else if (!select)
            shape[n++] = (end - start + step - 1) / step;
    }
    alloc_out(o, n, shape);
    for (int64_t i = 0; i < numel(n, shape); i++) {
        unravel(i, n, shape, idx);
        for (int d = 0, j = 0; d < a->ndim; d++)
            src[d] = d == dim ? (select ? start : start + idx[j++] * step) : idx[j++];
        o->v[i] = a->v[ravel(src, a->ndim, a->shape)];
    }
}

static void concat(const ref_t *args, int n_args, int dim, ref_t *o) {
    int64_t shape[PETAL_MAX_DIMS] = {0}, idx[PETAL_MAX_DIMS] = {0};
    memcpy(shape, args[0].shape, sizeof shape);
    shape[dim] = 0;
    for (int k = 0; k < n_args; k++) shape[dim] += args[k].shape[dim];
    alloc_out(o, args[0].ndim, shape);
    for (int64_t i = 0; i < numel(o->ndim, shape); i++) {
        unravel(i, o->ndim, shape, idx);
        int k = 0;
        while (idx[dim] >= args[k].shape[dim]) idx[dim] -= args[k++].shape[dim];
        o->v[i] = args[k].v[ravel(idx, o->ndim, args[k].shape)];
    }
}

static void index_select(const ref_t *a, int dim, const ref_t *index, ref_t *o) {
    int64_t shape[PETAL_MAX_DIMS] = {0}, idx[PETAL_MAX_DIMS] = {0};
    memcpy(shape, a->shape, sizeof shape);
    shape[dim] = index->shape[0];
    alloc_out(o, a->ndim, shape);
    for (int64_t i = 0; i < numel(a->ndim, shape); i++) {
        unravel(i, a->ndim, shape, idx);
        idx[dim] = (int64_t)index->v[idx[dim]];
        o->v[i] = a->v[ravel(idx, a->ndim, a->shape)];
    }
}

static void gather(const ref_t *a, int dim, const ref_t *index, ref_t *o) {
    int64_t idx[PETAL_MAX_DIMS] = {0};
    alloc_out(o, index->ndim, index->shape);
    for (int64_t i = 0; i < numel(index->ndim, index->shape); i++) {
        unravel(i, index->ndim, index->shape, idx);
        idx[dim] = (int64_t)index->v[i];
        o->v[i] = a->v[ravel(idx, a->ndim, a->shape)];
    }
}

// ---- fused primitives ----

static void softmax(const ref_t *a, int dim, bool as_log, ref_t *o) {
    dim = norm_dim(dim, a->ndim);
    alloc_out(o, a->ndim, a->shape);
    int64_t idx[PETAL_MAX_DIMS] = {0}, len = a->shape[dim];
    for (int64_t i = 0; i < numel(a->ndim, a->shape); i++) {
        unravel(i, a->ndim, a->shape, idx);
        double m = -INFINITY, s = 0;
        int64_t keep = idx[dim];
        for (int64_t r = 0; r < len; r++) {
            idx[dim] = r;
            m = fmax(m, a->v[ravel(idx, a->ndim, a->shape)]);
        }
        for (int64_t r = 0; r < len; r++) {
            idx[dim] = r;
            s += exp(a->v[ravel(idx, a->ndim, a->shape)] - m);
        }
        o->v[i] = as_log ? a->v[i] - m - log(s) : exp(a->v[i] - m) / s;
        idx[dim] = keep;
    }
}

static void layer_norm(const ref_t *x, const ref_t *w, const ref_t *b, double eps, ref_t *o) {
    int64_t d = x->shape[x->ndim - 1], rows = numel(x->ndim, x->shape) / d;
    alloc_out(o, x->ndim, x->shape);
    for (int64_t r = 0; r < rows; r++) {
        const double *row = x->v + r * d;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < d; i++) mean += row[i] / (double)d;
        for (int64_t i = 0; i < d; i++) var += (row[i] - mean) * (row[i] - mean) / (double)d;
        for (int64_t i = 0; i < d; i++)
            o->v[r * d + i] =
                (row[i] - mean) / sqrt(var + eps) * (w ? w->v[i] : 1) + (b ? b->v[i] : 0);
    }
}

static void normalize(const ref_t *a, int dim, double eps, ref_t *o) {
    dim = norm_dim(dim, a->ndim);
    alloc_out(o, a->ndim, a->shape);
    int64_t idx[PETAL_MAX_DIMS] = {0}, len = a->shape[dim];
    for (int64_t i = 0; i < numel(a->ndim, a->shape); i++) {
        unravel(i, a->ndim, a->shape, idx);
        double s = 0;
        for (int64_t r = 0; r < len; r++) {
            idx[dim] = r;
            double v = a->v[ravel(idx, a->ndim, a->shape)];
            s += v * v;
        }
        o->v[i] = a->v[i] / fmax(sqrt(s), eps);
    }
}

static void dropout(const ref_t *a, const op_case *c, ref_t *o) {
    double p = c->fparam[0];
    alloc_out(o, a->ndim, a->shape);
    for (int64_t i = 0; i < numel(a->ndim, a->shape); i++) {
        bool keep = !c->iparam[1] || philox_uniform((uint64_t)c->iparam[0], 0, (uint64_t)i) >= p;
        o->v[i] = keep ? (c->iparam[1] ? a->v[i] / (1 - p) : a->v[i]) : 0;
    }
}

static void cross_entropy(const ref_t *x, const ref_t *t, const op_case *c, ref_t *o) {
    int64_t n = x->shape[0], classes = x->shape[1], ignore = c->iparam[1], counted = 0;
    double eps = c->fparam[0], total = 0;
    double *rows = malloc((size_t)n * sizeof *rows);
    for (int64_t i = 0; i < n; i++) {
        int64_t y = (int64_t)t->v[i];
        if (ignore == -100 && y == 0) y = -100; // the op table's convention (op_table.c)
        rows[i] = 0;
        if (y == ignore) continue;
        double m = -INFINITY, s = 0, sum_logp = 0;
        for (int64_t j = 0; j < classes; j++) m = fmax(m, x->v[i * classes + j]);
        for (int64_t j = 0; j < classes; j++) s += exp(x->v[i * classes + j] - m);
        double lse = m + log(s);
        for (int64_t j = 0; j < classes; j++) sum_logp += x->v[i * classes + j] - lse;
        rows[i] = -(1 - eps) * (x->v[i * classes + y] - lse) - eps / (double)classes * sum_logp;
        total += rows[i];
        counted++;
    }
    if (c->iparam[0] == REDUCTION_NONE) {
        alloc_out(o, 1, (int64_t[]){n});
        memcpy(o->v, rows, (size_t)n * sizeof *rows);
    } else {
        alloc_out(o, 0, NULL);
        o->v[0] = c->iparam[0] == REDUCTION_SUM ? total : total / (double)counted;
    }
    free(rows);
}

static void attention(const ref_t *q, const ref_t *k, const ref_t *v, const ref_t *mask,
                      const op_case *c, ref_t *o) {
    int64_t b = q->shape[0], h = q->shape[1], t = q->shape[2], d = q->shape[3];
    int64_t s = k->shape[2], dv = v->shape[3];
    double scale = c->fparam[0] > 0 ? c->fparam[0] : 1 / sqrt((double)d);
    alloc_out(o, 4, (int64_t[]){b, h, t, dv});
    double *p = malloc((size_t)s * sizeof *p);
    for (int64_t bb = 0; bb < b; bb++)
        for (int64_t hh = 0; hh < h; hh++)
            for (int64_t i = 0; i < t; i++) {
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j < s; j++) {
                    double dot = 0;
                    for (int64_t e = 0; e < d; e++)
                        dot += q->v[((bb * h + hh) * t + i) * d + e] *
                               k->v[((bb * h + hh) * s + j) * d + e];
                    p[j] = scale * dot;
                    if (mask) p[j] += bcast(mask, (int64_t[]){bb, hh, i, j}, 4);
                    if (c->iparam[0] && j > i + (s - t)) p[j] = -INFINITY;
                    m = fmax(m, p[j]);
                }
                for (int64_t j = 0; j < s; j++) sum += (p[j] = exp(p[j] - m));
                // Dropout on the probabilities: element (bb, hh, i, j) of P keeps its Philox draw.
                double drop = c->fparam[1];
                for (int64_t j = 0; j < s && drop > 0; j++) {
                    uint64_t flat = (uint64_t)(((bb * h + hh) * t + i) * s + j);
                    bool keep = philox_uniform((uint64_t)c->iparam[1], 0, flat) >= drop;
                    p[j] = keep ? p[j] / (1 - drop) : 0;
                }
                for (int64_t e = 0; e < dv; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < s; j++)
                        acc += p[j] / sum * v->v[((bb * h + hh) * s + j) * dv + e];
                    o->v[((bb * h + hh) * t + i) * dv + e] = acc;
                }
            }
    free(p);
}

// qkv (B, T, 3 H D) split into q, k, v (B, H, T, D), H = iparam[2]; the heads of the output
// merged back into (B, T, H D).
static void attention_packed(const ref_t *qkv, const ref_t *mask, const op_case *c, ref_t *o) {
    int64_t b = qkv->shape[0], t = qkv->shape[1], h = c->iparam[2], d = qkv->shape[2] / 3 / h;
    ref_t parts[3], heads;
    for (int p = 0; p < 3; p++) {
        alloc_out(&parts[p], 4, (int64_t[]){b, h, t, d});
        for (int64_t bb = 0; bb < b; bb++)
            for (int64_t hh = 0; hh < h; hh++)
                for (int64_t i = 0; i < t; i++)
                    for (int64_t e = 0; e < d; e++)
                        parts[p].v[((bb * h + hh) * t + i) * d + e] =
                            qkv->v[(bb * t + i) * 3 * h * d + (p * h + hh) * d + e];
    }
    attention(&parts[0], &parts[1], &parts[2], mask, c, &heads);
    alloc_out(o, 3, (int64_t[]){b, t, h * d});
    for (int64_t bb = 0; bb < b; bb++)
        for (int64_t hh = 0; hh < h; hh++)
            for (int64_t i = 0; i < t; i++)
                for (int64_t e = 0; e < d; e++)
                    o->v[(bb * t + i) * h * d + hh * d + e] =
                        heads.v[((bb * h + hh) * t + i) * d + e];
    for (int p = 0; p < 3; p++) free(parts[p].v);
    free(heads.v);
}

// ---- dispatch ----

#define IS(name) (strcmp(c->op, name) == 0)

bool reference_run(const op_case *c, const ref_t *a, ref_t *o) {
    const int64_t *ip = c->iparam;
    static const struct {
        const char *name;
        fn2 f;
    } binaries[] = {{"add_gelu", r_add_gelu},
                    {"add", r_add},
                    {"sub", r_sub},
                    {"mul", r_mul},
                    {"div", r_div},
                    {"eq", r_eq},
                    {"ne", r_ne},
                    {"lt", r_lt},
                    {"le", r_le},
                    {"gt", r_gt},
                    {"ge", r_ge}};
    static const struct {
        const char *name;
        fn1 f;
    } unaries[] = {{"add_scalar", r_add_scalar},
                   {"mul_scalar", r_mul_scalar},
                   {"div_scalar", r_div_scalar},
                   {"neg", r_neg},
                   {"exp", r_exp},
                   {"log", r_log},
                   {"sqrt", r_sqrt},
                   {"rsqrt", r_rsqrt},
                   {"abs", r_abs},
                   {"tanh", r_tanh},
                   {"sigmoid", r_sigmoid},
                   {"relu", r_relu},
                   {"gelu", r_gelu},
                   {"gelu_tanh", r_gelu_tanh},
                   {"pow", r_pow},
                   {"clamp", r_clamp}};
    for (size_t i = 0; i < sizeof binaries / sizeof binaries[0]; i++)
        if (IS(binaries[i].name)) return binary(&a[0], &a[1], o, binaries[i].f, c), true;
    for (size_t i = 0; i < sizeof unaries / sizeof unaries[0]; i++)
        if (IS(unaries[i].name)) return unary(&a[0], o, unaries[i].f, c), true;
    if (IS("where")) return where3(&a[0], &a[1], &a[2], o), true;
    if (IS("masked_fill")) {
        ref_t value = {.ndim = 0, .v = (double[]){c->fparam[0]}};
        return where3(&a[1], &value, &a[0], o), true;
    }
    static const struct {
        const char *name;
        int kind;
    } reductions[] = {{"sum", R_SUM},      {"mean", R_MEAN},     {"max", R_MAX},
                      {"min", R_MIN},      {"logsumexp", R_LSE}, {"argmax", R_ARGMAX},
                      {"argmin", R_ARGMIN}};
    for (size_t i = 0; i < sizeof reductions / sizeof reductions[0]; i++)
        if (IS(reductions[i].name))
            return reduce(&a[0], (int)ip[0], ip[1], reductions[i].kind, o), true;
    if (IS("sum_all") || IS("mean_all")) {
        ref_t flat = {.ndim = 1, .shape = {numel(a[0].ndim, a[0].shape)}, .v = a[0].v};
        return reduce(&flat, 0, false, IS("sum_all") ? R_SUM : R_MEAN, o), true;
    }
    if (IS("topk")) return topk(&a[0], ip[0], ip[1], o), true;
    if (IS("matmul")) return matmul(&a[0], &a[1], o), true;
    if (IS("linear")) return linear(&a[0], &a[1], c->n_args > 2 ? &a[2] : NULL, o), true;
    if (IS("linear_lowrank")) return linear_lowrank(&a[0], &a[1], &a[2], &a[3], o), true;
    if (IS("add_lowrank")) return add_lowrank(&a[0], &a[1], &a[2], o), true;
    if (IS("reshape")) {
        int64_t shape[PETAL_MAX_DIMS] = {0}, known = 1, n = numel(a[0].ndim, a[0].shape);
        int nd = (int)ip[0];
        for (int d = 0; d < nd; d++) known *= ip[1 + d] == -1 ? 1 : ip[1 + d];
        for (int d = 0; d < nd; d++) shape[d] = ip[1 + d] == -1 ? n / known : ip[1 + d];
        return same_values(&a[0], o, nd, shape), true;
    }
    if (IS("flatten")) {
        int64_t shape[PETAL_MAX_DIMS] = {0};
        int nd = 0, s = (int)ip[0], e = (int)ip[1];
        for (int d = 0; d < a[0].ndim; d++) {
            if (d <= s || d > e)
                shape[nd++] = a[0].shape[d];
            else
                shape[nd - 1] *= a[0].shape[d];
        }
        return same_values(&a[0], o, nd, shape), true;
    }
    if (IS("contiguous")) return same_values(&a[0], o, a[0].ndim, a[0].shape), true;
    if (IS("squeeze") || IS("unsqueeze")) {
        int64_t shape[PETAL_MAX_DIMS] = {0};
        int nd = 0, dim = (int)ip[0];
        if (IS("squeeze")) {
            dim = norm_dim(dim, a[0].ndim);
            for (int d = 0; d < a[0].ndim; d++)
                if (d != dim) shape[nd++] = a[0].shape[d];
        } else {
            dim = dim < 0 ? dim + a[0].ndim + 1 : dim;
            for (int d = 0; d <= a[0].ndim; d++)
                shape[nd++] = d == dim ? 1 : a[0].shape[d < dim ? d : d - 1];
        }
        return same_values(&a[0], o, nd, shape), true;
    }
    if (IS("permute"))
        return permute(&a[0], (const int[]){(int)ip[0], (int)ip[1], (int)ip[2]}, o), true;
    if (IS("transpose")) {
        int perm[PETAL_MAX_DIMS];
        for (int d = 0; d < a[0].ndim; d++) perm[d] = d;
        perm[ip[0]] = (int)ip[1];
        perm[ip[1]] = (int)ip[0];
        return permute(&a[0], perm, o), true;
    }
    if (IS("slice")) return slice(&a[0], (int)ip[0], ip[1], ip[2], ip[3], false, o), true;
    if (IS("select")) {
        int dim = norm_dim((int)ip[0], a[0].ndim);
        int64_t i = ip[1] < 0 ? ip[1] + a[0].shape[dim] : ip[1];
        return slice(&a[0], dim, i, i + 1, 1, true, o), true;
    }
    if (IS("expand")) {
        int64_t shape[] = {2, 3, 4}, idx[PETAL_MAX_DIMS];
        alloc_out(o, 3, shape);
        for (int64_t i = 0; i < 24; i++) {
            unravel(i, 3, shape, idx);
            o->v[i] = bcast(&a[0], idx, 3);
        }
        return true;
    }
    if (IS("concat")) return concat(a, c->n_args, norm_dim((int)ip[0], a[0].ndim), o), true;
    if (IS("stack")) {
        ref_t u[4];
        for (int k = 0; k < c->n_args; k++) {
            u[k] = a[k];
            u[k].ndim = a[k].ndim + 1;
            for (int d = a[k].ndim; d > ip[0]; d--) u[k].shape[d] = a[k].shape[d - 1];
            u[k].shape[ip[0]] = 1;
        }
        return concat(u, c->n_args, (int)ip[0], o), true;
    }
    if (IS("index_select"))
        return index_select(&a[0], norm_dim((int)ip[0], a[0].ndim), &a[1], o), true;
    if (IS("gather")) return gather(&a[0], norm_dim((int)ip[0], a[0].ndim), &a[1], o), true;
    if (IS("embedding")) {
        ref_t flat = {.ndim = 1, .shape = {numel(a[1].ndim, a[1].shape)}, .v = a[1].v};
        index_select(&a[0], 0, &flat, o);
        o->ndim = a[1].ndim + 1;
        memcpy(o->shape, a[1].shape, sizeof o->shape);
        o->shape[a[1].ndim] = a[0].shape[1];
        return true;
    }
    if (IS("softmax") || IS("log_softmax"))
        return softmax(&a[0], (int)ip[0], IS("log_softmax"), o), true;
    if (IS("layer_norm"))
        return layer_norm(&a[0], c->n_args > 1 ? &a[1] : NULL, c->n_args > 2 ? &a[2] : NULL,
                          c->fparam[0], o),
               true;
    if (IS("normalize")) return normalize(&a[0], (int)ip[0], c->fparam[0], o), true;
    if (IS("dropout")) return dropout(&a[0], c, o), true;
    if (IS("cross_entropy")) return cross_entropy(&a[0], &a[1], c, o), true;
    if (IS("attention"))
        return attention(&a[0], &a[1], &a[2], c->n_args > 3 ? &a[3] : NULL, c, o), true;
    if (IS("attention_packed"))
        return attention_packed(&a[0], c->n_args > 1 ? &a[1] : NULL, c, o), true;
    return false;
}
