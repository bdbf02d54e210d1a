#include "io/pth.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/file_map.h"
#include "io/load_budget.h"
#include "io/pickle.h"
#include "io/zip.h"
#include "tensor/storage.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "torch storages are little-endian and are copied as they are");

typedef struct {
    const char *path;
    zip_archive zip;
    char *prefix; // the archive's folder: "archive", or the saved file's stem
    load_budget budget;
    tensor_storage **storages; // per zip entry: its bytes once a tensor views them, else NULL
} pth_archive;

// The folder holding data.pkl: torch names it after the saved file, so any name goes.
static petal_status find_prefix(pth_archive *a) {
    const char *pkl = NULL;
    for (int i = 0; i < a->zip.n; i++) {
        const char *name = a->zip.entries[i].name, *slash = strchr(name, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0) continue;
        if (pkl)
            return petal_error(PETAL_ERR_FORMAT, "%s: two pickles in one archive ('%s', '%s')",
                               a->path, pkl, name);
        pkl = name;
    }
    if (!pkl)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: a zip archive without <folder>/data.pkl: not a torch.save file",
                           a->path);
    a->prefix = buffer_strndup(pkl, strlen(pkl) - strlen("/data.pkl"));
    return PETAL_OK;
}

static zip_entry *find_member(const pth_archive *a, const char *member) {
    char *name = NULL;
    PETAL_CHECK(asprintf(&name, "%s/%s", a->prefix, member) >= 0, "pth: out of host memory");
    zip_entry *e = zip_find(&a->zip, name);
    free(name);
    return e;
}

// torch >= 2.1 records the byte order of the storages; older files are little-endian.
static petal_status check_byte_order(pth_archive *a) {
    zip_entry *e = find_member(a, "byteorder");
    const uint8_t *text = NULL;
    if (!e) return PETAL_OK;
    petal_status st = zip_entry_data(&a->zip, e, &text);
    if (st == PETAL_OK && (e->size != 6 || memcmp(text, "little", 6) != 0))
        return petal_error(PETAL_ERR_FORMAT, "%s: storages are not little-endian", a->path);
    return st;
}

// The state dict: the whole pickle, or its 'model' / 'state_dict' entry when that is a dict.
static petal_status find_state_dict(const char *path, const pk_value *root, const pk_value **out) {
    if (root->type != PK_DICT)
        return petal_error(PETAL_ERR_FORMAT, "%s: the pickle holds %s, not a dict", path,
                           pk_type_name(root->type));
    static const char *wrappers[] = {"model", "state_dict"};
    *out = root;
    for (int i = 0; i < 2; i++) {
        const pk_value *v = pk_dict_get(root, wrappers[i]);
        if (v && v->type == PK_DICT) {
            *out = v;
            break;
        }
    }
    return PETAL_OK;
}

// Copies a strided view (sizes, strides, offset in elements of `elem` bytes) into dst in
// row-major order; the caller has checked that it stays inside src.
static void gather(uint8_t *dst, const uint8_t *src, int ndim, const int64_t *size,
                   const int64_t *stride, int64_t offset, size_t elem) {
    if (ndim == 0) {
        memcpy(dst, src + (size_t)offset * elem, elem);
        return;
    }
    int64_t rows = 1, idx[PETAL_MAX_DIMS] = {0};
    int last = ndim - 1;
    for (int d = 0; d < ndim; d++)
        if (size[d] == 0) return;
    for (int d = 0; d < last; d++) rows *= size[d];
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = offset;
        for (int d = 0; d < last; d++) base += idx[d] * stride[d];
        if (stride[last] == 1) {
            memcpy(dst, src + (size_t)base * elem, (size_t)size[last] * elem);
            dst += (size_t)size[last] * elem;
        } else {
            for (int64_t j = 0; j < size[last]; j++, dst += elem)
                memcpy(dst, src + (size_t)(base + j * stride[last]) * elem, elem);
        }
        for (int d = last - 1; d >= 0 && ++idx[d] == size[d]; d--) idx[d] = 0;
    }
}

// Checks that every element of the view lies inside a storage of `avail` elements.
static petal_status check_extent(const pth_archive *a, const char *name, const pk_value *t,
                                 uint64_t avail) {
    uint64_t last = (uint64_t)t->tensor.offset; // at most INT64_MAX: no overflow below
    for (int d = 0; d < t->tensor.ndim; d++) {
        uint64_t n = (uint64_t)t->tensor.size[d], s = (uint64_t)t->tensor.stride[d];
        if (n == 0) return PETAL_OK;
        if (n > 1 && s > (UINT64_MAX / 2 - last) / (n - 1))
            return petal_error(PETAL_ERR_FORMAT, "%s: entry '%s' has strides out of range", a->path,
                               name);
        last += (n - 1) * s;
    }
    if (last >= avail)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: entry '%s' reaches element %" PRIu64
                           " of a storage holding %" PRIu64,
                           a->path, name, last, avail);
    return PETAL_OK;
}

// A row-major block of the storage (strides of size-1 dims do not matter), not empty: such an
// entry can be a view of the storage instead of a copy.
static bool is_contiguous_block(const pk_value *t) {
    int64_t expected = 1;
    for (int d = t->tensor.ndim - 1; d >= 0; d--) {
        if (t->tensor.size[d] == 0) return false;
        if (t->tensor.size[d] == 1) continue;
        if (t->tensor.stride[d] != expected) return false;
        expected *= t->tensor.size[d];
    }
    return true;
}

// The storage in zip entry e, copied out of the archive when the first entry views it: the later
// views of it share it, and it is charged to the file's budget once.
static petal_status shared_storage(pth_archive *a, const char *name, const zip_entry *e,
                                   const uint8_t *bytes, tensor_storage **out) {
    tensor_storage **slot = &a->storages[e - a->zip.entries];
    if (!*slot) {
        petal_status st = load_budget_take(&a->budget, name, e->size);
        if (st != PETAL_OK) return st;
        *slot = storage_new(DEVICE_CPU, e->size);
        memcpy((*slot)->data, bytes, e->size);
    }
    *out = *slot;
    return PETAL_OK;
}

// A contiguous block becomes a view of its (shared) storage; any other view (a transpose, an
// expanded zero-stride tensor) a contiguous copy of its own, charged to the budget, since petal's
// consumers of a loaded state dict read tensors as contiguous memory.
static petal_status read_tensor(pth_archive *a, const char *name, const pk_value *t, tensor **out) {
    const pk_value *s = t->tensor.storage;
    char *member = NULL;
    PETAL_CHECK(asprintf(&member, "data/%s", s->storage.key) >= 0, "pth: out of host memory");
    zip_entry *e = find_member(a, member);
    free(member);
    if (!e)
        return petal_error(PETAL_ERR_FORMAT, "%s: entry '%s': its storage '%s/data/%s' is missing",
                           a->path, name, a->prefix, s->storage.key);
    const uint8_t *bytes = NULL;
    petal_status st = zip_entry_data(&a->zip, e, &bytes);
    if (st != PETAL_OK) return st;
    uint64_t unit = s->storage.untyped ? 1 : dtype_size(s->storage.dtype);
    if ((uint64_t)s->storage.numel > e->size / unit)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: entry '%s': storage '%s' declares %" PRId64
                           " elements but holds %" PRIu64 " bytes",
                           a->path, name, s->storage.key, s->storage.numel, e->size);
    size_t elem = dtype_size(t->tensor.dtype);
    st = check_extent(a, name, t, (uint64_t)s->storage.numel * unit / elem);
    if (st != PETAL_OK) return st;
    if (is_contiguous_block(t)) {
        tensor_storage *shared = NULL;
        st = shared_storage(a, name, e, bytes, &shared);
        if (st != PETAL_OK) return st;
        int64_t strides[PETAL_MAX_DIMS];
        tensor_contiguous_strides(t->tensor.ndim, t->tensor.size, strides);
        *out = tensor_make_view(shared, t->tensor.dtype, t->tensor.ndim, t->tensor.size, strides,
                                t->tensor.offset);
        return PETAL_OK;
    }
    st = load_budget_take_shape(&a->budget, name, t->tensor.dtype, t->tensor.ndim, t->tensor.size,
                                NULL);
    if (st != PETAL_OK) return st;
    *out = tensor_empty(t->tensor.dtype, t->tensor.ndim, t->tensor.size);
    gather(tensor_data(*out), bytes, t->tensor.ndim, t->tensor.size, t->tensor.stride,
           t->tensor.offset, elem);
    return PETAL_OK;
}

static petal_status read_entries(pth_archive *a, const pk_value *sd, tensor_list *out) {
    for (size_t i = 0; i < sd->dict.len; i++) {
        const pk_value *k = sd->dict.keys[i], *v = sd->dict.values[i];
        if (k->type != PK_STRING || strlen(k->string.chars) != k->string.len)
            return petal_error(PETAL_ERR_FORMAT,
                               "%s: a key of the state dict is %s, not a plain string", a->path,
                               pk_type_name(k->type));
        if (v->type != PK_TENSOR)
            return petal_error(PETAL_ERR_FORMAT,
                               "%s: entry '%s' is %s, not a tensor (expected a state dict, or a "
                               "dict whose 'model' or 'state_dict' entry is one)",
                               a->path, k->string.chars, pk_type_name(v->type));
        tensor *t = NULL;
        petal_status st = read_tensor(a, k->string.chars, v, &t);
        if (st != PETAL_OK) return st;
        tensor_list_add(out, k->string.chars, t);
    }
    return PETAL_OK;
}

static petal_status read_archive(pth_archive *a, tensor_list *out) {
    petal_status st = find_prefix(a);
    if (st == PETAL_OK) st = check_byte_order(a);
    zip_entry *pkl = st == PETAL_OK ? find_member(a, "data.pkl") : NULL;
    const uint8_t *bytes = NULL;
    if (st == PETAL_OK) st = zip_entry_data(&a->zip, pkl, &bytes);
    if (st != PETAL_OK) return st;
    char *source = NULL;
    PETAL_CHECK(asprintf(&source, "%s: %s", a->path, pkl->name) >= 0, "pth: out of host memory");
    pickle_doc *doc = NULL;
    const pk_value *root = NULL, *sd = NULL;
    st = pickle_load(bytes, pkl->size, source, &doc, &root);
    free(source);
    if (st == PETAL_OK) st = find_state_dict(a->path, root, &sd);
    if (st == PETAL_OK) st = read_entries(a, sd, out);
    pickle_free(doc);
    return st;
}

petal_status pth_read_memory(const char *path, const uint8_t *data, size_t size, tensor_list *out) {
    tensor_list_init(out);
    pth_archive a = {.path = path};
    petal_status st = load_budget_init(&a.budget, path, size);
    if (st != PETAL_OK) return st;
    st = zip_open(&a.zip, path, data, size);
    if (st != PETAL_OK && size >= 2 && data[0] == 0x80 && data[1] <= 5)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: a torch.save file from before PyTorch 1.6 (a bare pickle); petal "
                           "reads the zip format: load and re-save it with a recent PyTorch",
                           path);
    if (st == PETAL_OK) {
        a.storages = buffer_calloc((size_t)a.zip.n + 1, sizeof *a.storages, "pth");
        st = read_archive(&a, out);
    }
    for (int i = 0; a.storages && i < a.zip.n; i++) storage_release(a.storages[i]);
    free(a.storages);
    zip_close(&a.zip);
    free(a.prefix);
    if (st != PETAL_OK) tensor_list_free(out);
    return st;
}

petal_status pth_read(const char *path, tensor_list *out) {
    return file_map_read_tensors(path, out, pth_read_memory);
}
