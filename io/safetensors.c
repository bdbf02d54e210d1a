#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/file_map.h"
#include "io/json.h"
#include "io/load_budget.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian and is copied as it is");

#define MAX_HEADER (100u << 20) // the reference implementation's limit

typedef struct {
    const char *name;
    petal_dtype dtype;
    int ndim;
    int64_t shape[PETAL_MAX_DIMS];
    uint64_t begin, end; // within the data section
} entry;

static petal_status bad(const char *path, const char *name, const char *what) {
    return petal_error(PETAL_ERR_FORMAT, "%s: tensor '%s': %s", path, name, what);
}

static petal_status parse_dtype(const char *path, const char *name, const json_value *info,
                                petal_dtype *out) {
    static const struct {
        const char *text;
        petal_dtype dtype;
    } names[] = {{"F32", PETAL_F32}, {"F16", PETAL_F16}, {"BF16", PETAL_BF16},
                 {"F64", PETAL_F64}, {"I64", PETAL_I64}, {"I32", PETAL_I32}};
    const char *text;
    petal_status st = json_get_string(info, "dtype", &text, NULL);
    if (st != PETAL_OK) return st;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(text, names[i].text) == 0) {
            *out = names[i].dtype;
            return PETAL_OK;
        }
    }
    return petal_error(PETAL_ERR_FORMAT,
                       "%s: tensor '%s': dtype '%.32s' is not one petal reads (F32, F16, BF16, "
                       "F64, I64, I32)",
                       path, name, text);
}

// Reads a JSON array of at most `max` non-negative integers.
static petal_status parse_ints(const char *path, const char *name, const json_value *info,
                               const char *key, size_t max, int64_t *out, size_t *n) {
    const json_value *array;
    petal_status st = json_get_array(info, key, &array);
    if (st != PETAL_OK) return st;
    *n = json_len(array);
    if (*n > max) return bad(path, name, "too many dims or offsets");
    for (size_t i = 0; i < *n && st == PETAL_OK; i++) {
        st = json_as_int(json_at(array, i), &out[i]);
        if (st == PETAL_OK && out[i] < 0) st = bad(path, name, "a negative size or offset");
    }
    return st;
}

static petal_status parse_entry(const char *path, const json_member *m, entry *e) {
    e->name = m->key;
    if (strlen(m->key) != m->key_len) return bad(path, "?", "a name holding a NUL byte");
    const json_value *info;
    int64_t offsets[2];
    size_t n_dims = 0, n_offsets = 0;
    petal_status st = json_as_object(&m->value, &info);
    if (st == PETAL_OK) st = parse_dtype(path, m->key, info, &e->dtype);
    if (st == PETAL_OK)
        st = parse_ints(path, m->key, info, "shape", PETAL_MAX_DIMS, e->shape, &n_dims);
    if (st == PETAL_OK) st = parse_ints(path, m->key, info, "data_offsets", 2, offsets, &n_offsets);
    if (st != PETAL_OK) return st;
    if (n_offsets != 2 || offsets[1] < offsets[0])
        return bad(path, m->key, "data_offsets is not [begin, end] with begin <= end");
    e->ndim = (int)n_dims;
    e->begin = (uint64_t)offsets[0];
    e->end = (uint64_t)offsets[1];
    if (!tensor_shape_within(e->ndim, e->shape, UINT32_MAX * (uint64_t)UINT16_MAX))
        return bad(path, m->key, "its shape is too large");
    uint64_t bytes = dtype_size(e->dtype);
    for (int d = 0; d < e->ndim; d++) bytes *= (uint64_t)e->shape[d];
    return bytes == e->end - e->begin ? PETAL_OK
                                      : bad(path, m->key, "its bytes do not match dtype and shape");
}

// __metadata__ maps strings to strings (the reference implementation refuses anything else).
static petal_status check_metadata(const json_value *metadata) {
    const json_value *map;
    petal_status st = json_as_object(metadata, &map);
    for (size_t i = 0; i < json_len(map) && st == PETAL_OK; i++) {
        const json_value *v = &map->object.members[i].value;
        if (v->type != JSON_STRING) st = json_type_error(v, "a string");
    }
    return st;
}

static int by_begin(const void *a, const void *b) {
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// The tensors must tile the data section: sorted by offset, each starts where the last ended.
static petal_status check_tiling(const char *path, entry *entries, size_t n, uint64_t data_size) {
    entry **sorted = buffer_alloc(n * sizeof *sorted, "safetensors");
    for (size_t i = 0; i < n; i++) sorted[i] = &entries[i];
    qsort(sorted, n, sizeof *sorted, by_begin);
    uint64_t at = 0;
    petal_status st = PETAL_OK;
    for (size_t i = 0; i < n && st == PETAL_OK; i++) {
        if (sorted[i]->begin != at)
            st = bad(path, sorted[i]->name,
                     sorted[i]->begin < at ? "its data overlaps another tensor's"
                                           : "a gap before its data");
        at = sorted[i]->end;
    }
    free(sorted);
    if (st == PETAL_OK && at != data_size)
        st = petal_error(PETAL_ERR_FORMAT,
                         "%s: the tensors cover %" PRIu64 " bytes of a data section of %" PRIu64
                         " (truncated, or trailing bytes)",
                         path, at, data_size);
    return st;
}

static petal_status read_header(const char *path, const uint8_t *data, size_t size,
                                uint64_t *header_len) {
    if (size < 8)
        return petal_error(PETAL_ERR_FORMAT, "%s: shorter than a safetensors header", path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | data[i];
    if (n > MAX_HEADER)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: the header claims %" PRIu64 " bytes, over the %u MiB that "
                           "safetensors allows (not a safetensors file, or a hostile one)",
                           path, n, MAX_HEADER >> 20);
    if (n > size - 8)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: the header claims %" PRIu64 " bytes; the file has %zu after the "
                           "length (not a safetensors file, or truncated)",
                           path, n, size - 8);
    *header_len = n;
    return PETAL_OK;
}

static petal_status read_tensors(const char *path, const json_value *header, const uint8_t *data,
                                 uint64_t data_size, load_budget *budget, tensor_list *out) {
    if (header->type != JSON_OBJECT)
        return petal_error(PETAL_ERR_FORMAT, "%s: the header is %s, not an object", path,
                           json_type_name(header->type));
    size_t n = 0;
    entry *entries = buffer_alloc(json_len(header) * sizeof *entries, "safetensors");
    petal_status st = PETAL_OK;
    for (size_t i = 0; i < json_len(header) && st == PETAL_OK; i++) {
        const json_member *m = &header->object.members[i];
        if (strcmp(m->key, "__metadata__") != 0)
            st = parse_entry(path, m, &entries[n++]);
        else
            st = check_metadata(&m->value);
    }
    if (st == PETAL_OK) st = check_tiling(path, entries, n, data_size);
    for (size_t i = 0; i < n && st == PETAL_OK; i++) {
        st = load_budget_take(budget, entries[i].name, entries[i].end - entries[i].begin);
        if (st != PETAL_OK) break;
        tensor *t = tensor_empty(entries[i].dtype, entries[i].ndim, entries[i].shape);
        memcpy(tensor_data(t), data + entries[i].begin, entries[i].end - entries[i].begin);
        tensor_list_add(out, entries[i].name, t);
    }
    free(entries);
    return st;
}

petal_status safetensors_read_memory(const char *path, const uint8_t *data, size_t size,
                                     tensor_list *out) {
    tensor_list_init(out);
    uint64_t header_len = 0;
    petal_status st = read_header(path, data, size, &header_len);
    if (st != PETAL_OK) return st;
    // The header's shape is known: {name: {dtype, shape, data_offsets}, __metadata__: {str: str}}.
    // Bounding depth, arrays and values refuses a hostile one ("[0,0,0,...", 100 MiB long) within
    // a few bytes, and any other in memory proportional to its length.
    char note[160];
    snprintf(note, sizeof note,
             "a safetensors header nests 3 deep and holds arrays of at most %d dims or 2 offsets: "
             "too many dims or offsets, or not a safetensors header",
             PETAL_MAX_DIMS);
    json_limits limits = {.max_depth = 3,
                          .max_array_len = PETAL_MAX_DIMS,
                          .max_values = header_len / 4 + 64,
                          .note = note};
    json_value *header = NULL;
    load_budget budget;
    st = load_budget_init(&budget, path, size);
    if (st == PETAL_OK)
        st = json_parse_limited((const char *)data + 8, header_len, path, &limits, &header);
    if (st == PETAL_OK)
        st = read_tensors(path, header, data + 8 + header_len, size - 8 - header_len, &budget, out);
    json_free(header);
    if (st != PETAL_OK) tensor_list_free(out);
    return st;
}

petal_status safetensors_read(const char *path, tensor_list *out) {
    return file_map_read_tensors(path, out, safetensors_read_memory);
}
