// Loading checkpoints into a registry: key reports, strictness, patterns and PETL fingerprints.
#include "io/checkpoint.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/fingerprint.h"

static void strings_push(char ***items, int *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Appends a formatted string to a growing array of strings.
static void strings_push(char ***items, int *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int len = vasprintf(&s, fmt, ap);
    va_end(ap);
    PETAL_CHECK(len >= 0, "checkpoint: out of host memory");
    size_t cap = (size_t)*n;
    *items = buffer_grow(*items, &cap, (size_t)*n + 1, sizeof **items);
    (*items)[(*n)++] = s;
}

static void strings_free(char **items, int n) {
    for (int i = 0; i < n; i++) free(items[i]);
    free(items);
}

static const char *describe(const tensor *t, char *buf, size_t size) {
    char dims[SHAPE_STR_MAX];
    snprintf(buf, size, "%s %s", dtype_name(t->dtype),
             shape_str(t->ndim, t->shape, dims, sizeof dims));
    return buf;
}

static bool loadable(const tensor *want, const tensor *found) {
    if (!tensor_same_shape(want, found)) return false;
    if (want->dtype == found->dtype) return true;
    return dtype_is_float(want->dtype) && (found->dtype == PETAL_F16 || found->dtype == PETAL_BF16);
}

static void compare_keys(const param_registry *r, const tensor_list *file, checkpoint_kind kind,
                         const char *pattern, checkpoint_report *rep) {
    for (int i = 0; i < r->n; i++) {
        const param_entry *e = &r->items[i];
        if (pattern && !registry_match(pattern, e->name)) continue;
        if (kind == CHECKPOINT_PETL && !e->trainable) continue;
        if (!tensor_list_find(file, e->name))
            strings_push(&rep->missing, &rep->n_missing, "%s", e->name);
    }
    for (int i = 0; i < file->n; i++) {
        const named_tensor *f = &file->items[i];
        if (pattern && !registry_match(pattern, f->name)) continue;
        const param_entry *e = registry_find(r, f->name);
        char want[SHAPE_STR_MAX + 16], found[SHAPE_STR_MAX + 16];
        if (!e)
            strings_push(&rep->unexpected, &rep->n_unexpected, "%s", f->name);
        else if (!loadable(e->value, f->value))
            strings_push(&rep->mismatched, &rep->n_mismatched, "%s: expected %s, found %s", f->name,
                         describe(e->value, want, sizeof want),
                         describe(f->value, found, sizeof found));
    }
}

// Appends "N what ('a', 'b', ...)" to buf, listing a few names.
static void summarise(char *buf, size_t size, const char *what, char **names, int n) {
    if (n == 0) return;
    size_t len = strlen(buf);
    len += (size_t)snprintf(buf + len, size - len, "%s%d %s (", len ? ", " : "", n, what);
    for (int i = 0; i < n && i < 4 && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s'%s'", i ? ", " : "", names[i]);
    if (len < size) snprintf(buf + len, size - len, "%s)", n > 4 ? ", ..." : "");
}

static petal_status strict_failure(const char *path, const checkpoint_report *rep) {
    char list[1536] = "";
    summarise(list, sizeof list, "missing", rep->missing, rep->n_missing);
    summarise(list, sizeof list, "unexpected", rep->unexpected, rep->n_unexpected);
    summarise(list, sizeof list, "mismatched", rep->mismatched, rep->n_mismatched);
    petal_status st = rep->n_missing || rep->n_unexpected ? PETAL_ERR_KEY : PETAL_ERR_SHAPE;
    return petal_error(st,
                       "checkpoint '%s' does not match the registry: %s; nothing was loaded (a "
                       "non-strict load takes the matching keys)",
                       path, list);
}

// The fingerprint of the registry's non-buffer entries that are frozen: not trainable, or, when
// `file` is given, not carried by that PETL file (so the frozen part as it was when it was saved,
// whatever the loading registry marks trainable).
static uint64_t frozen_fingerprint(const param_registry *r, const tensor_list *file) {
    const char **names = buffer_alloc((size_t)r->n * sizeof *names, "checkpoint");
    const tensor **values = buffer_alloc((size_t)r->n * sizeof *values, "checkpoint");
    int n = 0;
    for (int i = 0; i < r->n; i++) {
        const param_entry *e = &r->items[i];
        bool frozen = file ? !tensor_list_find(file, e->name) : !e->trainable;
        if (e->buffer || !frozen) continue;
        names[n] = e->name;
        values[n++] = e->value;
    }
    uint64_t fp = fingerprint_entries(n, names, values);
    free(names);
    free(values);
    return fp;
}

uint64_t checkpoint_fingerprint(const param_registry *r) {
    return frozen_fingerprint(r, NULL);
}

static petal_status check_base(const char *path, const param_registry *r, const tensor_list *file,
                               uint64_t want) {
    uint64_t got = frozen_fingerprint(r, file);
    if (got == want) return PETAL_OK;
    return petal_error(PETAL_ERR_ARG,
                       "checkpoint '%s' holds PETL tensors trained on a base with fingerprint "
                       "0x%016" PRIx64 ", but the registry's frozen tensors have fingerprint "
                       "0x%016" PRIx64 "; load the base checkpoint it was trained on first, or set "
                       "checkpoint_load_options.force_base to load it anyway",
                       path, want, got);
}

static void copy_matching(param_registry *r, const tensor_list *file, const char *pattern,
                          checkpoint_report *rep) {
    for (int i = 0; i < file->n; i++) {
        const named_tensor *f = &file->items[i];
        if (pattern && !registry_match(pattern, f->name)) continue;
        param_entry *e = registry_find(r, f->name);
        if (!e || !loadable(e->value, f->value)) continue;
        tensor_copy_(e->value, f->value);
        rep->n_loaded++;
    }
}

petal_status checkpoint_load_from(const char *path, const tensor_list *file,
                                  const checkpoint_info *info, param_registry *r,
                                  const checkpoint_load_options *opts, checkpoint_report *report) {
    checkpoint_load_options none = {0};
    if (!opts) opts = &none;
    checkpoint_report local = {0};
    checkpoint_report *rep = report ? report : &local;
    *rep = (checkpoint_report){0};
    petal_status st = PETAL_OK;
    compare_keys(r, file, info->kind, opts->pattern, rep);
    bool clean = rep->n_missing == 0 && rep->n_unexpected == 0 && rep->n_mismatched == 0;
    if (!clean && !opts->non_strict) st = strict_failure(path, rep);
    if (st == PETAL_OK && info->kind == CHECKPOINT_PETL && !opts->force_base)
        st = check_base(path, r, file, info->fingerprint);
    if (st == PETAL_OK) copy_matching(r, file, opts->pattern, rep);
    checkpoint_report_free(&local);
    return st;
}

petal_status checkpoint_load(const char *path, param_registry *r,
                             const checkpoint_load_options *opts, checkpoint_report *report) {
    if (report) *report = (checkpoint_report){0};
    tensor_list file;
    checkpoint_info info;
    petal_status st = checkpoint_read(path, &file, &info);
    if (st != PETAL_OK) return st;
    st = checkpoint_load_from(path, &file, &info, r, opts, report);
    tensor_list_free(&file);
    checkpoint_info_free(&info);
    return st;
}

void checkpoint_report_free(checkpoint_report *report) {
    strings_free(report->missing, report->n_missing);
    strings_free(report->unexpected, report->n_unexpected);
    strings_free(report->mismatched, report->n_mismatched);
    *report = (checkpoint_report){0};
}
