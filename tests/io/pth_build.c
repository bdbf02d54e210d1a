#include "tests/io/pth_build.h"

#include <stdlib.h>
#include <string.h>

#include "io/zip.h"

void pth_bytes_put(pth_bytes *b, const void *p, size_t n) {
    if (n == 0) return;
    if (b->len + n > b->cap) {
        b->cap = 2 * (b->len + n);
        b->data = realloc(b->data, b->cap);
        if (!b->data) abort();
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_le(pth_bytes *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) {
        uint8_t c = i < 8 ? (uint8_t)(v >> (8 * i)) : 0;
        pth_bytes_put(b, &c, 1);
    }
}

pth_bytes pth_build_zip(int n, const char *const *names, const uint8_t *const *data,
                        const size_t *size) {
    pth_bytes out = {0}, central = {0};
    for (int i = 0; i < n; i++) {
        uint32_t crc = zip_crc32(data[i], size[i]);
        size_t offset = out.len, name_len = strlen(names[i]);
        put_le(&out, 0x04034b50, 4);
        put_le(&out, 20, 2);
        put_le(&out, 0, 8); // flags, method, time, date
        put_le(&out, crc, 4);
        put_le(&out, size[i], 4);
        put_le(&out, size[i], 4);
        put_le(&out, name_len, 2);
        put_le(&out, 0, 2);
        pth_bytes_put(&out, names[i], name_len);
        pth_bytes_put(&out, data[i], size[i]);
        put_le(&central, 0x02014b50, 4);
        put_le(&central, 20, 2);
        put_le(&central, 20, 2);
        put_le(&central, 0, 8);
        put_le(&central, crc, 4);
        put_le(&central, size[i], 4);
        put_le(&central, size[i], 4);
        put_le(&central, name_len, 2);
        put_le(&central, 0, 12); // extra, comment, disk, attributes
        put_le(&central, offset, 4);
        pth_bytes_put(&central, names[i], name_len);
    }
    size_t cd_offset = out.len;
    pth_bytes_put(&out, central.data, central.len);
    put_le(&out, 0x06054b50, 4);
    put_le(&out, 0, 4);
    put_le(&out, (uint64_t)n, 2);
    put_le(&out, (uint64_t)n, 2);
    put_le(&out, central.len, 4);
    put_le(&out, cd_offset, 4);
    put_le(&out, 0, 2);
    free(central.data);
    return out;
}

// ---- pickle opcodes ----

static void op(pth_bytes *b, const char *bytes) {
    pth_bytes_put(b, bytes, strlen(bytes));
}

static void binunicode(pth_bytes *b, const char *s) {
    op(b, "X");
    put_le(b, strlen(s), 4);
    op(b, s);
}

static void binint(pth_bytes *b, int64_t v) {
    op(b, "J");
    put_le(b, (uint64_t)(uint32_t)(int32_t)v, 4);
}

static void int_tuple(pth_bytes *b, int n, const int64_t *v) {
    op(b, "(");
    for (int i = 0; i < n; i++) binint(b, v[i]);
    op(b, "t");
}

static void rebuild_tensor(pth_bytes *b, const pth_build_view *v, int64_t numel) {
    op(b, "ctorch._utils\n_rebuild_tensor_v2\n(");
    op(b, "(");
    binunicode(b, "storage");
    op(b, "ctorch\nFloatStorage\n");
    binunicode(b, "0");
    binunicode(b, "cpu");
    binint(b, numel);
    op(b, "tQ"); // the persistent id
    binint(b, v->offset);
    int_tuple(b, v->ndim, v->size);
    int_tuple(b, v->ndim, v->stride);
    op(b, "\x89"
          "ccollections\nOrderedDict\n)Rt"); // requires_grad False, hooks
    op(b, "R");
}

pth_bytes pth_build_state_dict(int n_views, const pth_build_view *views, const float *storage,
                               int64_t numel) {
    pth_bytes pkl = {0};
    op(&pkl, "\x80\x02}(");
    for (int i = 0; i < n_views; i++) {
        binunicode(&pkl, views[i].name);
        rebuild_tensor(&pkl, &views[i], numel);
    }
    op(&pkl, "u.");
    const char *names[] = {"archive/data.pkl", "archive/data/0"};
    const uint8_t *data[] = {pkl.data, (const uint8_t *)storage};
    size_t size[] = {pkl.len, (size_t)numel * sizeof(float)};
    pth_bytes zip = pth_build_zip(2, names, data, size);
    free(pkl.data);
    return zip;
}
