// Reading checkpoints: the header first, then libhdf5 over the checked bytes in memory.
#include "io/checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/file_map.h"
#include "io/fingerprint.h"
#include "io/h5_file.h"
#include "io/load_budget.h"
#include "io/strmap.h"

#define HDF5_MAGIC "\211HDF\r\n\032\n"

// Parses "size N\nhash H\n" after the magic: false unless it is exactly what checkpoint_seal
// writes (no leading zeros, spaces or signs), followed by zeros to the end of the user block.
static bool parse_seal(const uint8_t *data, uint64_t *size, uint64_t *hash) {
    const char *p = (const char *)data + strlen(CHECKPOINT_MAGIC),
               *end = (const char *)data + CHECKPOINT_HEADER_SIZE;
    if (!memchr(p, '\0', (size_t)(end - p)) ||
        sscanf(p, "size %" SCNu64 "\nhash %16" SCNx64, size, hash) != 2)
        return false;
    char again[96];
    snprintf(again, sizeof again, "size %" PRIu64 "\nhash %016" PRIx64 "\n", *size, *hash);
    if (strcmp(p, again) != 0) return false;
    for (const char *q = p + strlen(p); q < end; q++)
        if (*q) return false;
    return true;
}

static petal_status check_seal(const char *path, const file_map *m) {
    if (m->size < CHECKPOINT_HEADER_SIZE ||
        memcmp(m->data, CHECKPOINT_MAGIC, strlen(CHECKPOINT_MAGIC)) != 0) {
        bool hdf5 =
            m->size >= 8 && (memcmp(m->data, HDF5_MAGIC, 8) == 0 ||
                             (m->size >= CHECKPOINT_HEADER_SIZE + 8 &&
                              memcmp(m->data + CHECKPOINT_HEADER_SIZE, HDF5_MAGIC, 8) == 0));
        return petal_error(PETAL_ERR_FORMAT,
                           "checkpoint '%s': %s (petal checkpoints start with a 512-byte user "
                           "block holding \"petal checkpoint\", the size and a hash; see "
                           "docs/checkpoint-format.md)",
                           path, hdf5 ? "an HDF5 file without petal's header" : "not a checkpoint");
    }
    uint64_t size, hash;
    if (!parse_seal(m->data, &size, &hash))
        return petal_error(PETAL_ERR_FORMAT, "checkpoint '%s': the header is damaged", path);
    if (size != m->size)
        return petal_error(PETAL_ERR_FORMAT,
                           "checkpoint '%s': the header says %" PRIu64
                           " bytes but the file has %zu (truncated or appended to)",
                           path, size, m->size);
    fingerprint_state s;
    fingerprint_init(&s);
    fingerprint_bytes(&s, m->data + CHECKPOINT_HEADER_SIZE, m->size - CHECKPOINT_HEADER_SIZE);
    uint64_t got = fingerprint_final(&s);
    if (got != hash)
        return petal_error(PETAL_ERR_FORMAT,
                           "checkpoint '%s': the contents hash to %016" PRIx64
                           " but the header says %016" PRIx64
                           " (the file is damaged, or was changed without resealing it)",
                           path, got, hash);
    return PETAL_OK;
}

// ---- reading ----

// Reads a scalar string attribute, variable- or fixed-length, into a malloc'd string. *out stays
// NULL when the attribute is absent and not required.
static petal_status read_string_attr(hid_t obj, const char *path, const char *name, bool required,
                                     char **out) {
    *out = NULL;
    if (H5Aexists(obj, name) <= 0)
        return required
                   ? petal_error(PETAL_ERR_FORMAT,
                                 "checkpoint '%s': the root attribute '%s' is missing", path, name)
                   : PETAL_OK;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ftype = H5Aget_type(attr), space = H5Aget_space(attr);
    bool variable = H5Tis_variable_str(ftype) > 0;
    hid_t mtype = H5Tcopy(H5T_C_S1);
    H5Tset_size(mtype, variable ? H5T_VARIABLE : H5Tget_size(ftype));
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    char *fixed = variable ? NULL : calloc(H5Tget_size(ftype) + 1, 1), *vlen = NULL;
    petal_status st = PETAL_OK;
    if (H5Tget_class(ftype) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1 ||
        H5Aread(attr, mtype, variable ? (void *)&vlen : fixed) < 0 || (variable && !vlen))
        st = petal_error(PETAL_ERR_FORMAT,
                         "checkpoint '%s': the root attribute '%s' should be one string", path,
                         name);
    else
        *out = buffer_strndup(variable ? vlen : fixed, strlen(variable ? vlen : fixed));
    if (vlen) H5free_memory(vlen);
    free(fixed);
    H5Tclose(mtype);
    H5Sclose(space);
    H5Tclose(ftype);
    H5Aclose(attr);
    return st;
}

// Reads a required scalar integer attribute, converted to `mtype`.
static petal_status read_int_attr(hid_t obj, const char *path, const char *name, hid_t mtype,
                                  void *out) {
    if (H5Aexists(obj, name) <= 0)
        return petal_error(PETAL_ERR_FORMAT, "checkpoint '%s': the root attribute '%s' is missing",
                           path, name);
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ftype = H5Aget_type(attr), space = H5Aget_space(attr);
    petal_status st = PETAL_OK;
    if (H5Tget_class(ftype) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1 ||
        H5Aread(attr, mtype, out) < 0)
        st = petal_error(PETAL_ERR_FORMAT,
                         "checkpoint '%s': the root attribute '%s' should be one integer", path,
                         name);
    H5Sclose(space);
    H5Tclose(ftype);
    H5Aclose(attr);
    return st;
}

static petal_status read_attrs(hid_t file, const char *path, checkpoint_info *info) {
    char *kind = NULL;
    petal_status st =
        read_int_attr(file, path, "petal_format_version", H5T_NATIVE_INT, &info->version);
    if (st == PETAL_OK && (info->version < 1 || info->version > CHECKPOINT_FORMAT_VERSION))
        st = petal_error(PETAL_ERR_FORMAT,
                         "checkpoint '%s': petal_format_version is %d; this petal reads versions "
                         "1 to %d",
                         path, info->version, CHECKPOINT_FORMAT_VERSION);
    if (st == PETAL_OK) st = read_string_attr(file, path, "kind", true, &kind);
    if (st == PETAL_OK && strcmp(kind, "full") != 0 && strcmp(kind, "petl") != 0)
        st = petal_error(PETAL_ERR_FORMAT,
                         "checkpoint '%s': the attribute 'kind' is '%s'; expected 'full' or 'petl'",
                         path, kind);
    if (st == PETAL_OK) info->kind = strcmp(kind, "petl") == 0 ? CHECKPOINT_PETL : CHECKPOINT_FULL;
    free(kind);
    if (st == PETAL_OK) st = read_string_attr(file, path, "config", true, &info->config);
    if (st == PETAL_OK) st = read_string_attr(file, path, "vocab", false, &info->vocab);
    if (st == PETAL_OK)
        st = read_int_attr(file, path, "fingerprint", H5T_NATIVE_UINT64, &info->fingerprint);
    return st;
}

static petal_status dataset_shape(hid_t dset, const char *path, const char *name, int *ndim,
                                  int64_t *shape) {
    hid_t space = H5Dget_space(dset);
    int nd = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    petal_status st = PETAL_OK;
    if (nd < 0 || nd > PETAL_MAX_DIMS || H5Sget_simple_extent_type(space) == H5S_NULL) {
        st = petal_error(PETAL_ERR_FORMAT,
                         "checkpoint '%s': dataset '%s' has %d dims; petal tensors have 0 to %d",
                         path, name, nd, PETAL_MAX_DIMS);
    } else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        for (int d = 0; d < nd; d++) shape[d] = dims[d] > INT64_MAX ? -1 : (int64_t)dims[d];
        *ndim = nd;
    }
    H5Sclose(space);
    return st;
}

// A dataset holds at most as many bytes as the file, times a generous compression ratio for
// chunked ones (h5py with compression): a header must not make petal allocate terabytes.
static petal_status check_dataset_size(hid_t dset, const char *path, const char *name, int ndim,
                                       const int64_t *shape, petal_dtype dtype, size_t file_size) {
    uint64_t limit = (uint64_t)file_size;
    hid_t dcpl = H5Dget_create_plist(dset);
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) limit = 1024 * (limit + (1u << 20));
    H5Pclose(dcpl);
    if (tensor_shape_within(ndim, shape, limit / dtype_size(dtype))) return PETAL_OK;
    char dims[SHAPE_STR_MAX];
    return petal_error(PETAL_ERR_FORMAT,
                       "checkpoint '%s': dataset '%s' declares shape %s, more than the file holds",
                       path, name, shape_str(ndim, shape, dims, sizeof dims));
}

typedef struct {
    const char *path;
    size_t file_size;
    tensor_list *out;
    load_budget budget;
    strmap shared; // object id -> index in out, for datasets more than one hard link reaches
    petal_status status;
} visit_ctx;

static petal_status read_dataset(visit_ctx *c, hid_t dset, const char *name, tensor **out) {
    hid_t ftype = H5Dget_type(dset);
    petal_dtype dtype;
    bool known = h5_classify(ftype, &dtype);
    H5Tclose(ftype);
    if (!known)
        return petal_error(PETAL_ERR_FORMAT,
                           "checkpoint '%s': dataset '%s' has a type petal does not read (it "
                           "reads f32, f64, f16, bf16, i32 and i64)",
                           c->path, name);
    int ndim = 0;
    int64_t shape[PETAL_MAX_DIMS];
    petal_status st = dataset_shape(dset, c->path, name, &ndim, shape);
    if (st == PETAL_OK)
        st = check_dataset_size(dset, c->path, name, ndim, shape, dtype, c->file_size);
    if (st == PETAL_OK) st = load_budget_take_shape(&c->budget, name, dtype, ndim, shape, NULL);
    if (st != PETAL_OK) return st;
    tensor *t = tensor_empty(dtype, ndim, shape);
    hid_t mtype = h5_type(dtype, false);
    herr_t rc =
        tensor_numel(t) ? H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor_data(t)) : 0;
    H5Tclose(mtype);
    if (rc < 0) {
        tensor_free(t);
        return petal_error(PETAL_ERR_FORMAT, "checkpoint '%s': cannot read dataset '%s': %s",
                           c->path, name, h5_reason());
    }
    *out = t;
    return PETAL_OK;
}

// A dataset that several hard links reach is read once; the other names view its tensor.
static petal_status read_linked_dataset(visit_ctx *c, hid_t dset, const char *name, tensor **out) {
    h5_object_id id;
    if (!h5_object_id_of(dset, &id))
        return petal_error(PETAL_ERR_FORMAT, "checkpoint '%s': cannot inspect dataset '%s': %s",
                           c->path, name, h5_reason());
    int64_t first =
        id.links > 1 ? strmap_get(&c->shared, (const char *)id.bytes, sizeof id.bytes) : -1;
    if (first >= 0) {
        *out = tensor_detach(c->out->items[first].value);
        return PETAL_OK;
    }
    petal_status st = read_dataset(c, dset, name, out);
    if (st == PETAL_OK && id.links > 1)
        strmap_set(&c->shared, (const char *)id.bytes, sizeof id.bytes, c->out->n);
    return st;
}

static herr_t visit_link(hid_t group, const char *link, const H5L_info_t *info, void *data) {
    visit_ctx *c = data;
    if (info->type != H5L_TYPE_HARD) {
        c->status = petal_error(PETAL_ERR_FORMAT,
                                "checkpoint '%s': '/%s' is a soft or external link; petal "
                                "checkpoints hold only groups and datasets",
                                c->path, link);
        return -1;
    }
    hid_t obj = H5Oopen(group, link, H5P_DEFAULT);
    if (obj < 0) {
        c->status = petal_error(PETAL_ERR_FORMAT, "checkpoint '%s': cannot open '/%s': %s", c->path,
                                link, h5_reason());
        return -1;
    }
    if (H5Iget_type(obj) == H5I_DATASET) {
        char *name = buffer_strndup(link, strlen(link));
        for (char *p = name; *p; p++)
            if (*p == '/') *p = '.';
        tensor *t = NULL;
        if (tensor_list_find(c->out, name))
            c->status =
                petal_error(PETAL_ERR_FORMAT, "checkpoint '%s': two datasets map to the name '%s'",
                            c->path, name);
        else
            c->status = read_linked_dataset(c, obj, name, &t);
        if (c->status == PETAL_OK) tensor_list_add(c->out, name, t);
        free(name);
    }
    H5Oclose(obj);
    return c->status == PETAL_OK ? 0 : -1;
}

static petal_status read_hdf5(const char *path, const file_map *m, tensor_list *out,
                              checkpoint_info *info) {
    h5_memory mem = {m->data, m->size};
    char *name = NULL;
    PETAL_CHECK(asprintf(&name, "%s (in memory)", path) >= 0, "checkpoint: out of host memory");
    h5_quiet q = h5_quiet_begin();
    hid_t file = h5_open_in_memory(name, &mem);
    free(name);
    petal_status st =
        file >= 0 ? read_attrs(file, path, info)
                  : petal_error(PETAL_ERR_FORMAT, "checkpoint '%s': not a readable HDF5 file: %s",
                                path, h5_reason());
    visit_ctx c = {.path = path, .file_size = m->size, .out = out};
    if (st == PETAL_OK) st = load_budget_init(&c.budget, path, m->size);
    if (st == PETAL_OK) {
        if (H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, visit_link, &c) < 0 && c.status == PETAL_OK)
            c.status = petal_error(PETAL_ERR_FORMAT, "checkpoint '%s': cannot list its tensors: %s",
                                   path, h5_reason());
        st = c.status;
    }
    strmap_free(&c.shared);
    if (file >= 0) H5Fclose(file);
    h5_quiet_end(q);
    return st;
}

petal_status checkpoint_read(const char *path, tensor_list *out, checkpoint_info *info) {
    checkpoint_info local = {0};
    tensor_list_init(out);
    file_map m;
    petal_status st = file_map_open(path, &m);
    if (st != PETAL_OK) return st;
    st = check_seal(path, &m);
    if (st == PETAL_OK) st = read_hdf5(path, &m, out, &local);
    file_map_close(&m);
    if (st != PETAL_OK) {
        tensor_list_free(out);
        checkpoint_info_free(&local);
    } else if (info) {
        *info = local;
    } else {
        checkpoint_info_free(&local);
    }
    return st;
}

void checkpoint_info_free(checkpoint_info *info) {
    free(info->config);
    free(info->vocab);
    info->config = info->vocab = NULL;
}
