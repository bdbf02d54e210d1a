#include "autograd/memory_profile.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "tensor/error.h"
#include "tensor/storage.h"

// A growable array of rows; `index` is an open-addressed table of row numbers + 1 (0: empty).
typedef struct {
    memory_profile_row *rows;
    int n, cap;
    int *index;
    size_t index_cap; // a power of two, at least twice cap
} row_table;

// Storages already counted in this snapshot, open-addressed by pointer.
typedef struct {
    const tensor_storage **slots;
    size_t cap; // a power of two
} storage_set;

static struct {
    pthread_mutex_t lock;
    bool on;
    petal_device device;
    size_t base;       // bytes in use when the profile began
    int64_t first;     // the serial of the first storage allocated since then
    size_t next_level; // bytes in use that trigger the next snapshot
    row_table work;    // the snapshot being taken
    memory_profile_row *best;
    int n_best;
    size_t in_use, saved, saved_before, grads;
    storage_set seen;
} prof = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t hash_ptr(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    return (size_t)(x ^ (x >> 33));
}

static void *checked_calloc(size_t n, size_t size) {
    void *p = calloc(n, size);
    PETAL_CHECK(p != NULL, "memory profile: out of host memory");
    return p;
}

// True the first time s is seen since the set was cleared.
static bool storage_set_add(storage_set *set, const tensor_storage *s) {
    size_t mask = set->cap - 1;
    for (size_t i = hash_ptr(s) & mask;; i = (i + 1) & mask) {
        if (set->slots[i] == s) return false;
        if (!set->slots[i]) {
            set->slots[i] = s;
            return true;
        }
    }
}

// An empty set with room for n storages at half load.
static void storage_set_clear(storage_set *set, size_t n) {
    size_t cap = 64;
    while (cap < 2 * n) cap *= 2;
    if (cap > set->cap) {
        free(set->slots);
        set->slots = checked_calloc(cap, sizeof *set->slots);
        set->cap = cap;
    } else {
        memset(set->slots, 0, set->cap * sizeof *set->slots);
    }
}

static size_t row_hash(const char *op, const tensor *t) {
    size_t h = hash_ptr(op) ^ (size_t)t->dtype * 31u ^ (size_t)t->ndim;
    for (int d = 0; d < t->ndim; d++) h = h * 1000003u ^ (size_t)t->shape[d];
    return h;
}

static bool row_matches(const memory_profile_row *r, const char *op, const tensor *t) {
    return r->op == op && r->dtype == t->dtype && r->ndim == t->ndim &&
           memcmp(r->shape, t->shape, (size_t)t->ndim * sizeof *t->shape) == 0;
}

static void row_table_rehash(row_table *rt) {
    size_t cap = rt->index_cap ? rt->index_cap * 2 : 256;
    free(rt->index);
    rt->index = checked_calloc(cap, sizeof *rt->index);
    rt->index_cap = cap;
    for (int r = 0; r < rt->n; r++) {
        tensor key = {.dtype = rt->rows[r].dtype, .ndim = rt->rows[r].ndim};
        memcpy(key.shape, rt->rows[r].shape, sizeof key.shape);
        size_t i = row_hash(rt->rows[r].op, &key) & (cap - 1);
        while (rt->index[i]) i = (i + 1) & (cap - 1);
        rt->index[i] = r + 1;
    }
}

static void row_table_add(row_table *rt, const char *op, const tensor *t, size_t bytes) {
    if (2 * (size_t)(rt->n + 1) > rt->index_cap) row_table_rehash(rt);
    size_t mask = rt->index_cap - 1, i = row_hash(op, t) & mask;
    for (; rt->index[i]; i = (i + 1) & mask) {
        memory_profile_row *r = &rt->rows[rt->index[i] - 1];
        if (!row_matches(r, op, t)) continue;
        r->count++;
        r->bytes += bytes;
        return;
    }
    if (rt->n == rt->cap) {
        rt->cap = rt->cap ? 2 * rt->cap : 64;
        rt->rows = realloc(rt->rows, (size_t)rt->cap * sizeof *rt->rows);
        PETAL_CHECK(rt->rows != NULL, "memory profile: out of host memory");
    }
    memory_profile_row *r = &rt->rows[rt->n];
    *r = (memory_profile_row){
        .op = op, .dtype = t->dtype, .ndim = t->ndim, .count = 1, .bytes = bytes};
    memcpy(r->shape, t->shape, sizeof r->shape);
    rt->index[i] = ++rt->n;
}

static void row_table_clear(row_table *rt) {
    rt->n = 0;
    if (rt->index) memset(rt->index, 0, rt->index_cap * sizeof *rt->index);
}

static bool on_device(const tensor *t) {
    return t && device_equal(t->device, prof.device);
}

// Counts t's storage once; returns its bytes the first time, else 0.
static size_t count_storage(const tensor *t) {
    return on_device(t) && storage_set_add(&prof.seen, t->storage) ? t->storage->nbytes : 0;
}

static bool allocated_before(const tensor *t) {
    return t->storage->serial < prof.first;
}

// The saved tensors and pending gradients of every live node, into prof.work; called locked.
static void snapshot(size_t in_use) {
    size_t n_tensors = 0;
    for (ag_node *n = ag_live_first(); n; n = n->live_next) n_tensors += AG_MAX_SAVED + 1;
    storage_set_clear(&prof.seen, n_tensors);
    row_table_clear(&prof.work);
    size_t saved = 0, saved_before = 0, grads = 0;
    for (ag_node *n = ag_live_first(); n; n = n->live_next)
        for (int s = 0; s < AG_MAX_SAVED; s++) {
            size_t b = count_storage(n->saved[s]);
            if (b && allocated_before(n->saved[s])) {
                saved_before += b;
            } else if (b) {
                row_table_add(&prof.work, n->op, n->saved[s], b);
                saved += b;
            }
        }
    for (ag_node *n = ag_live_first(); n; n = n->live_next)
        if (n->grad && !allocated_before(n->grad)) grads += count_storage(n->grad);
    free(prof.best);
    prof.best = checked_calloc((size_t)prof.work.n + 1, sizeof *prof.best);
    if (prof.work.n) // rows is NULL before the first row
        memcpy(prof.best, prof.work.rows, (size_t)prof.work.n * sizeof *prof.best);
    prof.n_best = prof.work.n;
    prof.in_use = in_use;
    prof.saved = saved;
    prof.saved_before = saved_before;
    prof.grads = grads;
}

static size_t level_after(size_t bytes) {
    size_t step = bytes / 512;
    return bytes + (step > 65536 ? step : 65536);
}

static void on_peak(petal_device device, size_t current) {
    pthread_mutex_lock(&prof.lock);
    if (prof.on && device_equal(device, prof.device) && current >= prof.next_level) {
        snapshot(current);
        prof.next_level = level_after(current);
    }
    pthread_mutex_unlock(&prof.lock);
}

static void profile_free(void) {
    free(prof.work.rows);
    free(prof.work.index);
    free(prof.best);
    free(prof.seen.slots);
    prof.work = (row_table){0};
    prof.best = NULL;
    prof.seen = (storage_set){0};
    prof.n_best = 0;
    prof.in_use = prof.saved = prof.saved_before = prof.grads = 0;
}

void memory_profile_begin(petal_device device) {
    pthread_mutex_lock(&prof.lock);
    profile_free();
    prof.on = true;
    prof.device = device;
    memory_stats st = memory_get_stats(device);
    prof.base = prof.next_level = st.current;
    prof.first = st.n_allocs + 1;
    pthread_mutex_unlock(&prof.lock);
    memory_reset_peak(device);
    ag_live_track(true);
    memory_set_peak_hook(on_peak);
}

void memory_profile_end(void) {
    memory_set_peak_hook(NULL);
    ag_live_track(false);
    pthread_mutex_lock(&prof.lock);
    prof.on = false;
    profile_free();
    pthread_mutex_unlock(&prof.lock);
}

static int by_bytes_desc(const void *a, const void *b) {
    const memory_profile_row *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return strcmp(x->op, y->op);
}

memory_profile memory_profile_get(void) {
    pthread_mutex_lock(&prof.lock);
    qsort(prof.best, (size_t)prof.n_best, sizeof *prof.best, by_bytes_desc);
    memory_profile p = {.base = prof.base,
                        .in_use = prof.in_use,
                        .saved = prof.saved,
                        .saved_before = prof.saved_before,
                        .grads = prof.grads,
                        .n_rows = prof.n_best,
                        .rows = prof.best};
    pthread_mutex_unlock(&prof.lock);
    return p;
}

static double mb(size_t bytes) {
    return (double)bytes / 1e6;
}

void memory_profile_print(FILE *f, int max_rows) {
    memory_profile p = memory_profile_get();
    char dev[16];
    size_t extra = p.in_use > p.base ? p.in_use - p.base : 0;
    fprintf(f,
            "memory at the allocator's peak on %s: %.1f MB allocated since the start (%.1f MB "
            "in use)\n",
            device_name(prof.device, dev), mb(extra), mb(p.in_use));
    fprintf(f, "  %9s %6s  %-16s %s\n", "MB", "count", "saved by", "shape");
    size_t shown = 0;
    for (int r = 0; r < p.n_rows && r < max_rows; r++) {
        char shape[SHAPE_STR_MAX];
        const memory_profile_row *row = &p.rows[r];
        fprintf(f, "  %9.1f %6lld  %-16s %s %s\n", mb(row->bytes), (long long)row->count, row->op,
                dtype_name(row->dtype), shape_str(row->ndim, row->shape, shape, sizeof shape));
        shown += row->bytes;
    }
    if (p.n_rows > max_rows)
        fprintf(f, "  %9.1f %6s  %d more groups\n", mb(p.saved - shown), "", p.n_rows - max_rows);
    fprintf(f, "  %9.1f %6s  saved tensors in all\n", mb(p.saved), "");
    fprintf(f, "  %9.1f %6s  gradients pending in the backward pass\n", mb(p.grads), "");
    fprintf(f,
            "  %9.1f %6s  the rest (outputs, temporaries, parameter gradients, optimizer state)\n",
            mb(extra - p.saved - p.grads), "");
    fprintf(f,
            "  (saved tensors allocated before the start, such as weights: %.1f MB, not counted)\n",
            mb(p.saved_before));
}
