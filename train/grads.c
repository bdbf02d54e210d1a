#include "train/grads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/tensor_list.h"
#include "tensor/scope.h"

static char *join(const char *prefix, const char *name) {
    size_t n = strlen(prefix) + strlen(name) + 1;
    char *s = malloc(n);
    PETAL_CHECK(s != NULL, "grads: out of host memory");
    snprintf(s, n, "%s%s", prefix, name);
    return s;
}

// The gradient of a trainable entry as recorded: zeros when no gradient reached it (an unused
// head), so that a rule which starts or stops reaching a tensor shows up as a difference.
static tensor *entry_grad(const param_entry *e) {
    return e->value->grad ? e->value->grad : tensor_zeros_like(e->value);
}

static tensor *loss_tensor(double loss) {
    return tensor_from_data(PETAL_F64, SHAPE(1), &loss);
}

petal_status grad_record(const param_registry *r, double loss, const char *fingerprint_json,
                         const char *path) {
    checkpoint_entries g = {0};
    int mark = scope_begin();
    for (int i = 0; i < r->n; i++)
        if (r->items[i].trainable)
            checkpoint_entries_add(&g, GRAD_PREFIX, r->items[i].name, entry_grad(&r->items[i]));
    checkpoint_entries_add(&g, "", GRAD_LOSS_NAME, loss_tensor(loss));
    petal_status s =
        checkpoint_save_entries(path, &g, &(checkpoint_meta){.config = fingerprint_json});
    scope_end(mark);
    checkpoint_entries_free(&g);
    return s;
}

// ---- comparing ----

static void *grow(void *items, int n, size_t size) {
    void *bigger = realloc(items, (size_t)(n + 1) * size);
    PETAL_CHECK(bigger != NULL, "grad_compare: out of host memory");
    return bigger;
}

static void unravel(const tensor *t, int64_t flat, grad_mismatch *m) {
    m->ndim = t->ndim;
    for (int d = t->ndim - 1; d >= 0; d--) {
        m->index[d] = flat % t->shape[d];
        flat /= t->shape[d];
    }
}

// Whether got matches want (the file's) element for element; if not, m gets the element
// furthest outside the tolerance (NaN counts as infinitely far).
static bool tensors_agree(const tensor *want, const tensor *got, double rtol, double atol,
                          grad_mismatch *m) {
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    if (want->dtype != got->dtype || !tensor_same_shape(want, got)) {
        snprintf(m->why, sizeof m->why, "expected %s %s, found %s %s", dtype_name(want->dtype),
                 shape_str(want->ndim, want->shape, a, sizeof a), dtype_name(got->dtype),
                 shape_str(got->ndim, got->shape, b, sizeof b));
        return false;
    }
    int64_t n = tensor_numel(want), worst_at = 0;
    double *w = malloc((size_t)(2 * n + 1) * sizeof *w), *g = w + n, worst = -INFINITY;
    PETAL_CHECK(w != NULL, "grad_compare: out of host memory");
    tensor_to_doubles(want, w);
    tensor_to_doubles(got, g);
    for (int64_t i = 0; i < n; i++) {
        double diff = fabs(g[i] - w[i]);
        double excess = isnan(diff) ? INFINITY : diff - (atol + rtol * fabs(w[i]));
        m->n_bad += excess > 0;
        if (excess > worst) {
            worst = excess;
            worst_at = i;
        }
    }
    if (m->n_bad > 0) {
        unravel(want, worst_at, m);
        m->expected = w[worst_at];
        m->found = g[worst_at];
    }
    free(w);
    return m->n_bad == 0;
}

typedef struct {
    grad_report *rep;
    const tensor_list *file;
    bool *used; // (file->n) matched by a registry tensor
    double rtol, atol;
} compare_ctx;

static void compare_one(compare_ctx *c, const char *key, const char *name, const tensor *got) {
    const named_tensor *want = tensor_list_find(c->file, key);
    grad_report *rep = c->rep;
    if (!want) {
        rep->missing = grow(rep->missing, rep->n_missing, sizeof *rep->missing);
        rep->missing[rep->n_missing++] = join("", name);
        return;
    }
    c->used[want - c->file->items] = true;
    rep->n_compared++;
    grad_mismatch m = {0};
    if (tensors_agree(want->value, got, c->rtol, c->atol, &m)) return;
    m.name = join("", name);
    rep->failed = grow(rep->failed, rep->n_failed, sizeof *rep->failed);
    rep->failed[rep->n_failed++] = m;
}

static void compare_all(compare_ctx *c, const param_registry *r, double loss) {
    int mark = scope_begin();
    compare_one(c, GRAD_LOSS_NAME, GRAD_LOSS_NAME, loss_tensor(loss));
    for (int i = 0; i < r->n; i++) {
        if (!r->items[i].trainable) continue;
        char *key = join(GRAD_PREFIX, r->items[i].name);
        compare_one(c, key, r->items[i].name, entry_grad(&r->items[i]));
        free(key);
    }
    scope_end(mark);
    grad_report *rep = c->rep;
    for (int i = 0; i < c->file->n; i++) {
        if (c->used[i]) continue;
        const char *name = c->file->items[i].name;
        size_t skip = strncmp(name, GRAD_PREFIX, strlen(GRAD_PREFIX)) ? 0 : strlen(GRAD_PREFIX);
        rep->extra = grow(rep->extra, rep->n_extra, sizeof *rep->extra);
        rep->extra[rep->n_extra++] = join("", name + skip);
    }
}

// The status and one-line message for a finished report.
static petal_status verdict(const grad_report *rep, const char *path, double rtol, double atol) {
    if (rep->n_failed > 0) {
        const grad_mismatch *m = &rep->failed[0];
        char at[SHAPE_STR_MAX];
        if (m->why[0])
            return petal_error(PETAL_ERR_NUMERIC, "%s: %d of %d tensors differ; '%s': %s", path,
                               rep->n_failed, rep->n_compared, m->name, m->why);
        return petal_error(PETAL_ERR_NUMERIC,
                           "%s: %d of %d tensors differ beyond rtol %g, atol %g; '%s' at %s: "
                           "expected %.9g, found %.9g",
                           path, rep->n_failed, rep->n_compared, rtol, atol, m->name,
                           shape_str(m->ndim, m->index, at, sizeof at), m->expected, m->found);
    }
    if (rep->n_missing > 0 || rep->n_extra > 0)
        return petal_error(PETAL_ERR_KEY,
                           "%s: %d trainable tensors have no recorded gradient%s%s%s, %d recorded "
                           "gradients belong to no trainable tensor%s%s%s",
                           path, rep->n_missing, rep->n_missing ? " (first '" : "",
                           rep->n_missing ? rep->missing[0] : "", rep->n_missing ? "')" : "",
                           rep->n_extra, rep->n_extra ? " (first '" : "",
                           rep->n_extra ? rep->extra[0] : "", rep->n_extra ? "')" : "");
    return PETAL_OK;
}

petal_status grad_compare(const param_registry *r, double loss, const char *path, double rtol,
                          double atol, grad_report *out) {
    grad_report rep = {0};
    tensor_list file;
    checkpoint_info info;
    petal_status s = checkpoint_read(path, &file, &info);
    if (s == PETAL_OK) {
        rep.recorded_config = info.config;
        info.config = NULL;
        checkpoint_info_free(&info);
        compare_ctx c = {&rep, &file, calloc((size_t)file.n + 1, sizeof(bool)), rtol, atol};
        PETAL_CHECK(c.used != NULL, "grad_compare: out of host memory");
        compare_all(&c, r, loss);
        free(c.used);
        tensor_list_free(&file);
        s = verdict(&rep, path, rtol, atol);
    }
    if (out)
        *out = rep;
    else
        grad_report_free(&rep);
    return s;
}

void grad_report_print(const grad_report *rep, FILE *out) {
    char at[SHAPE_STR_MAX];
    for (int i = 0; i < rep->n_failed; i++) {
        const grad_mismatch *m = &rep->failed[i];
        if (m->why[0])
            fprintf(out, "changed  %s: %s\n", m->name, m->why);
        else
            fprintf(out, "changed  %s: %lld elements, worst at %s: expected %.9g, found %.9g\n",
                    m->name, (long long)m->n_bad, shape_str(m->ndim, m->index, at, sizeof at),
                    m->expected, m->found);
    }
    for (int i = 0; i < rep->n_missing; i++)
        fprintf(out, "missing  %s: trainable, but the file has no gradient for it\n",
                rep->missing[i]);
    for (int i = 0; i < rep->n_extra; i++)
        fprintf(out, "extra    %s: in the file, but not a trainable tensor now\n", rep->extra[i]);
}

void grad_report_free(grad_report *rep) {
    for (int i = 0; i < rep->n_failed; i++) free(rep->failed[i].name);
    for (int i = 0; i < rep->n_missing; i++) free(rep->missing[i]);
    for (int i = 0; i < rep->n_extra; i++) free(rep->extra[i]);
    free(rep->failed);
    free(rep->missing);
    free(rep->extra);
    free(rep->recorded_config);
    *rep = (grad_report){0};
}
