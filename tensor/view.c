#include "tensor/view.h"

#include <inttypes.h>
#include <string.h>

#include "tensor/backend.h"
#include "tensor/error.h"

static tensor *make(const tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                    int64_t offset) {
    return tensor_make_view(t->storage, t->dtype, ndim, shape, strides, offset);
}

void shape_infer(const char *op, int64_t numel, int ndim, const int64_t *in, int64_t *out) {
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < ndim; d++) {
        if (in[d] == -1) {
            PETAL_CHECK(infer < 0, "%s: more than one -1 in the new shape", op);
            infer = d;
        } else {
            PETAL_CHECK(in[d] >= 0, "%s: negative size %" PRId64 " in dim %d", op, in[d], d);
            known *= in[d];
        }
        out[d] = in[d];
    }
    char s[SHAPE_STR_MAX];
    if (infer >= 0) {
        PETAL_CHECK(known > 0 && numel % known == 0,
                    "%s: cannot infer -1 in %s for %" PRId64 " elements", op,
                    shape_str(ndim, in, s, sizeof s), numel);
        out[infer] = numel / known;
        known *= out[infer];
    }
    PETAL_CHECK(known == numel, "%s: shape %s has %" PRId64 " elements, the tensor has %" PRId64,
                op, shape_str(ndim, in, s, sizeof s), known, numel);
}

int shape_broadcast(const char *op, int na, const int64_t *a, int nb, const int64_t *b,
                    int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t x = i < n - na ? 1 : a[i - (n - na)];
        int64_t y = i < n - nb ? 1 : b[i - (n - nb)];
        char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
        PETAL_CHECK(x == y || x == 1 || y == 1, "%s: cannot broadcast shapes %s and %s", op,
                    shape_str(na, a, sa, sizeof sa), shape_str(nb, b, sb, sizeof sb));
        out[i] = x == 1 ? y : x;
    }
    return n;
}

// Strides for viewing t (of shape old) as shape new without copying, if possible: each run of old
// dims that is contiguous in memory can be re-split freely (the rule of torch's computeStride).
static bool reshape_strides(const tensor *t, int ndim, const int64_t *shape, int64_t *strides) {
    int64_t numel = tensor_numel(t);
    if (numel == 0 || t->ndim == 0) {
        tensor_contiguous_strides(ndim, shape, strides);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->strides[t->ndim - 1];
    int64_t tensor_numel_run = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel_run *= t->shape[d];
        bool run_ends = d == 0 || (t->shape[d - 1] != 1 &&
                                   t->strides[d - 1] != tensor_numel_run * chunk_base_stride);
        if (!run_ends) continue;
        while (view_d >= 0 && (view_numel < tensor_numel_run || shape[view_d] == 1)) {
            strides[view_d] = view_numel * chunk_base_stride;
            view_numel *= shape[view_d];
            view_d--;
        }
        if (view_numel != tensor_numel_run) return false;
        if (d > 0) {
            chunk_base_stride = t->strides[d - 1];
            tensor_numel_run = 1;
            view_numel = 1;
        }
    }
    return view_d == -1;
}

tensor *view_reshape(const tensor *t, int ndim, const int64_t *shape) {
    int64_t resolved[PETAL_MAX_DIMS], strides[PETAL_MAX_DIMS];
    PETAL_CHECK(ndim >= 0 && ndim <= PETAL_MAX_DIMS, "reshape: ndim %d out of range", ndim);
    shape_infer("reshape", tensor_numel(t), ndim, shape, resolved);
    if (!reshape_strides(t, ndim, resolved, strides)) return NULL;
    return make(t, ndim, resolved, strides, t->offset);
}

tensor *view_permute(const tensor *t, const int *perm) {
    int64_t shape[PETAL_MAX_DIMS], strides[PETAL_MAX_DIMS];
    bool seen[PETAL_MAX_DIMS] = {false};
    for (int d = 0; d < t->ndim; d++) {
        int p = perm[d] < 0 ? perm[d] + t->ndim : perm[d];
        PETAL_CHECK(p >= 0 && p < t->ndim && !seen[p],
                    "permute: entry %d (%d) is not a permutation of %d dims", d, perm[d], t->ndim);
        seen[p] = true;
        shape[d] = t->shape[p];
        strides[d] = t->strides[p];
    }
    return make(t, t->ndim, shape, strides, t->offset);
}

tensor *view_transpose(const tensor *t, int d0, int d1) {
    int a = tensor_dim_index(t, d0, "transpose"), b = tensor_dim_index(t, d1, "transpose");
    int perm[PETAL_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) perm[d] = d;
    perm[a] = b;
    perm[b] = a;
    return view_permute(t, perm);
}

void slice_resolve(const char *op, int64_t n, int64_t *start, int64_t *end, int64_t step) {
    PETAL_CHECK(step > 0, "%s: step must be positive, got %" PRId64, op, step);
    if (*start < 0) *start += n;
    if (*end < 0) *end += n;
    if (*end > n) *end = n;
    PETAL_CHECK(*start >= 0 && *start <= n && *end >= *start,
                "%s: range [%" PRId64 ", %" PRId64 ") out of bounds for a dim of size %" PRId64, op,
                *start, *end, n);
}

tensor *view_slice(const tensor *t, int dim, int64_t start, int64_t end, int64_t step) {
    int d = tensor_dim_index(t, dim, "slice");
    slice_resolve("slice", t->shape[d], &start, &end, step);
    int64_t shape[PETAL_MAX_DIMS], strides[PETAL_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(strides, t->strides, sizeof strides);
    shape[d] = (end - start + step - 1) / step;
    strides[d] = t->strides[d] * step;
    return make(t, t->ndim, shape, strides, t->offset + start * t->strides[d]);
}

tensor *view_select(const tensor *t, int dim, int64_t index) {
    int d = tensor_dim_index(t, dim, "select");
    int64_t n = t->shape[d];
    if (index < 0) index += n;
    PETAL_CHECK(index >= 0 && index < n,
                "select: index %" PRId64 " out of range for dim %d of size %" PRId64, index, d, n);
    int64_t shape[PETAL_MAX_DIMS], strides[PETAL_MAX_DIMS];
    for (int i = 0, j = 0; i < t->ndim; i++) {
        if (i == d) continue;
        shape[j] = t->shape[i];
        strides[j++] = t->strides[i];
    }
    return make(t, t->ndim - 1, shape, strides, t->offset + index * t->strides[d]);
}

tensor *view_expand(const tensor *t, int ndim, const int64_t *shape) {
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    PETAL_CHECK(ndim >= t->ndim && ndim <= PETAL_MAX_DIMS, "expand: cannot expand %s to %s",
                shape_str(t->ndim, t->shape, a, sizeof a), shape_str(ndim, shape, b, sizeof b));
    int64_t out_shape[PETAL_MAX_DIMS], strides[PETAL_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        int64_t want = shape[d];
        if (d < lead) {
            PETAL_CHECK(want >= 0, "expand: size -1 is not allowed in a new leading dim");
            out_shape[d] = want;
            strides[d] = 0;
            continue;
        }
        int64_t have = t->shape[d - lead];
        if (want == -1) want = have;
        PETAL_CHECK(want == have || have == 1, "expand: cannot expand %s to %s",
                    shape_str(t->ndim, t->shape, a, sizeof a), shape_str(ndim, shape, b, sizeof b));
        out_shape[d] = want;
        strides[d] = (have == 1 && want != 1) ? 0 : t->strides[d - lead];
    }
    return make(t, ndim, out_shape, strides, t->offset);
}

tensor *view_squeeze(const tensor *t, int dim) {
    int d = tensor_dim_index(t, dim, "squeeze");
    PETAL_CHECK(t->shape[d] == 1, "squeeze: dim %d has size %" PRId64 ", not 1", d, t->shape[d]);
    return view_select(t, d, 0);
}

tensor *view_unsqueeze(const tensor *t, int dim) {
    int d = dim < 0 ? dim + t->ndim + 1 : dim;
    PETAL_CHECK(d >= 0 && d <= t->ndim && t->ndim < PETAL_MAX_DIMS,
                "unsqueeze: dim %d out of range for a %d-d tensor", dim, t->ndim);
    int64_t shape[PETAL_MAX_DIMS], strides[PETAL_MAX_DIMS];
    for (int i = 0, j = 0; i <= t->ndim; i++) {
        if (i == d) {
            shape[i] = 1;
            strides[i] = j < t->ndim ? t->strides[j] * t->shape[j] : 1;
            continue;
        }
        shape[i] = t->shape[j];
        strides[i] = t->strides[j++];
    }
    return make(t, t->ndim + 1, shape, strides, t->offset);
}

tensor *view_contiguous(const tensor *t) {
    return tensor_is_contiguous(t) ? tensor_detach(t) : tensor_clone_data(t);
}
