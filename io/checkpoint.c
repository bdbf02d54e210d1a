#include "io/checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/files.h"
#include "io/fingerprint.h"
#include "io/h5_file.h"

const char *checkpoint_kind_name(checkpoint_kind kind) {
    return kind == CHECKPOINT_PETL ? "petl" : "full";
}

// "a.b.c" -> "/a/b/c" (malloc'd), or NULL when a component is empty or holds a '/'.
static char *name_to_path(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || name[0] == '.' || name[n - 1] == '.' || strstr(name, "..") || strchr(name, '/'))
        return NULL;
    char *path = buffer_alloc(n + 2, "checkpoint");
    path[0] = '/';
    for (size_t i = 0; i <= n; i++) path[i + 1] = name[i] == '.' ? '/' : name[i];
    return path;
}

// The header covers every byte after the user block, so a damaged file is refused before libhdf5
// parses any of it (io/checkpoint_read.c).
void checkpoint_seal(uint8_t *image, size_t size) {
    fingerprint_state s;
    fingerprint_init(&s);
    fingerprint_bytes(&s, image + CHECKPOINT_HEADER_SIZE, size - CHECKPOINT_HEADER_SIZE);
    memset(image, 0, CHECKPOINT_HEADER_SIZE);
    snprintf((char *)image, CHECKPOINT_HEADER_SIZE,
             CHECKPOINT_MAGIC "size %zu\nhash %016" PRIx64 "\n", size, fingerprint_final(&s));
}

// ---- writing ----

typedef struct {
    int n;
    const param_entry **items; // in ascending name order
} entry_set;

// The entries a file of `kind` holds, sorted by name.
static entry_set select_entries(const param_registry *r, checkpoint_kind kind) {
    entry_set set = {0, buffer_alloc((size_t)r->n * sizeof(param_entry *), "checkpoint")};
    const char **names = buffer_alloc((size_t)r->n * sizeof *names, "checkpoint");
    const param_entry **unsorted = buffer_alloc((size_t)r->n * sizeof *unsorted, "checkpoint");
    for (int i = 0; i < r->n; i++) {
        if (kind == CHECKPOINT_PETL && !r->items[i].trainable) continue;
        names[set.n] = r->items[i].name;
        unsorted[set.n++] = &r->items[i];
    }
    int *order = fingerprint_order(set.n, names);
    for (int i = 0; i < set.n; i++) set.items[i] = unsorted[order[i]];
    free(order);
    free(unsorted);
    free(names);
    return set;
}

static petal_status write_dataset(hid_t file, hid_t lcpl, hid_t dcpl, const char *path,
                                  const param_entry *e) {
    char *h5path = name_to_path(e->name);
    tensor *host = tensor_host_contiguous(e->value);
    hsize_t dims[PETAL_MAX_DIMS];
    for (int d = 0; d < host->ndim; d++) dims[d] = (hsize_t)host->shape[d];
    hid_t space = host->ndim ? H5Screate_simple(host->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t ftype = h5_type(host->dtype, true), mtype = h5_type(host->dtype, false);
    hid_t dset = H5Dcreate2(file, h5path, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    int one = 1;
    petal_status st = PETAL_OK;
    if (dset < 0)
        st = petal_error(PETAL_ERR_KEY,
                         "checkpoint '%s': cannot create dataset '%s' for '%s' (is a prefix of "
                         "this name also a tensor?): %s",
                         path, h5path, e->name, h5_reason());
    else if (H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor_data(host)) < 0 ||
             (e->buffer && !h5_write_scalar_attr(dset, "buffer", H5T_STD_I32LE, &one)))
        st = petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot write '%s': %s", path, e->name,
                         h5_reason());
    if (dset >= 0) H5Dclose(dset);
    H5Tclose(ftype);
    H5Tclose(mtype);
    H5Sclose(space);
    tensor_free(host);
    free(h5path);
    return st;
}

typedef struct {
    checkpoint_kind kind;
    const char *config, *vocab;
    uint64_t fingerprint;
} file_attrs;

static petal_status write_attrs(hid_t file, const char *path, const file_attrs *a) {
    int version = CHECKPOINT_FORMAT_VERSION;
    bool ok = h5_write_scalar_attr(file, "petal_format_version", H5T_STD_I32LE, &version) &&
              h5_write_string_attr(file, "kind", checkpoint_kind_name(a->kind)) &&
              h5_write_string_attr(file, "config", a->config) &&
              (!a->vocab || h5_write_string_attr(file, "vocab", a->vocab)) &&
              h5_write_scalar_attr(file, "fingerprint", H5T_STD_U64LE, &a->fingerprint);
    return ok ? PETAL_OK
              : petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot write the root attributes: %s",
                            path, h5_reason());
}

// Writes the datasets (in name order, so the file does not depend on registration order) and
// the attributes; a FULL file's fingerprint is computed on the way.
static petal_status write_contents(hid_t file, const char *path, const entry_set *set,
                                   file_attrs *a) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    H5Pset_obj_track_times(dcpl, 0); // no timestamps: the same tensors give the same bytes
    fingerprint_state own;
    fingerprint_init(&own);
    petal_status st = PETAL_OK;
    for (int i = 0; i < set->n && st == PETAL_OK; i++) {
        const param_entry *e = set->items[i];
        st = write_dataset(file, lcpl, dcpl, path, e);
        if (a->kind == CHECKPOINT_FULL && !e->buffer) fingerprint_tensor(&own, e->name, e->value);
    }
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    if (a->kind == CHECKPOINT_FULL) a->fingerprint = fingerprint_final(&own);
    return st == PETAL_OK ? write_attrs(file, path, a) : st;
}

// Builds the sealed file in memory: *image (malloc'd, *size bytes) on success. Building it there
// and writing it out with plain write() means a failing disk never leaves HDF5 holding a file it
// cannot close. The copy out of HDF5 briefly doubles the file's memory.
static petal_status build_image(const char *path, const entry_set *set, file_attrs *a,
                                uint8_t **image, size_t *size) {
    hid_t file = h5_create_in_memory(path, CHECKPOINT_HEADER_SIZE);
    if (file < 0)
        return petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot create an HDF5 file: %s", path,
                           h5_reason());
    petal_status st = write_contents(file, path, set, a);
    // The image HDF5 hands out starts after the user block (its addresses count from there).
    ssize_t n = st == PETAL_OK && H5Fflush(file, H5F_SCOPE_LOCAL) >= 0
                    ? H5Fget_file_image(file, NULL, 0)
                    : -1;
    if (n > 0) {
        *size = CHECKPOINT_HEADER_SIZE + (size_t)n;
        *image = buffer_alloc(*size, "checkpoint_save");
        if (H5Fget_file_image(file, *image + CHECKPOINT_HEADER_SIZE, (size_t)n) != n) n = -1;
    }
    if (st == PETAL_OK && n <= 0)
        st = petal_error(PETAL_ERR_IO, "checkpoint '%s': cannot finish the HDF5 file: %s", path,
                         h5_reason());
    H5Fclose(file);
    if (st == PETAL_OK) checkpoint_seal(*image, *size);
    return st;
}

petal_status checkpoint_save(const char *path, const param_registry *r, checkpoint_kind kind,
                             const checkpoint_meta *meta) {
    for (int i = 0; i < r->n; i++) {
        char *h5path = name_to_path(r->items[i].name);
        if (!h5path)
            return petal_error(PETAL_ERR_KEY,
                               "checkpoint '%s': cannot store '%s': names are dot-separated "
                               "non-empty components without '/'",
                               path, r->items[i].name);
        free(h5path);
    }
    file_attrs a = {.kind = kind,
                    .config = meta && meta->config ? meta->config : "{}",
                    .vocab = meta ? meta->vocab : NULL};
    if (kind == CHECKPOINT_PETL) a.fingerprint = checkpoint_fingerprint(r);
    entry_set set = select_entries(r, kind);
    uint8_t *image = NULL;
    size_t size = 0;
    h5_quiet q = h5_quiet_begin();
    petal_status st = build_image(path, &set, &a, &image, &size);
    h5_quiet_end(q);
    free(set.items);
    if (st != PETAL_OK) return st;
    st = file_write_atomic(path, image, size, "checkpoint");
    free(image);
    return st;
}

void checkpoint_entries_add(checkpoint_entries *e, const char *prefix, const char *name,
                            tensor *t) {
    param_registry *r = &e->entries;
    size_t cap = (size_t)r->cap;
    r->items = buffer_grow(r->items, &cap, (size_t)r->n + 1, sizeof *r->items);
    r->cap = (int)cap;
    strbuf full = {0};
    strbuf_printf(&full, "%s%s", prefix, name);
    r->items[r->n++] = (param_entry){.name = strbuf_take(&full), .value = t};
}

void checkpoint_entries_free(checkpoint_entries *e) {
    for (int i = 0; i < e->entries.n; i++) free(e->entries.items[i].name);
    free(e->entries.items);
    *e = (checkpoint_entries){0};
}

petal_status checkpoint_save_entries(const char *path, const checkpoint_entries *e,
                                     const checkpoint_meta *meta) {
    return checkpoint_save(path, &e->entries, CHECKPOINT_FULL, meta);
}
