#include "train/tb_events.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"

uint32_t tb_crc32c(const void *data, size_t n) {
    static uint32_t table[256];
    static bool ready = false; // filled once; the values never change, so a race is harmless
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

uint32_t tb_masked_crc(uint32_t crc) {
    return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

// ---- protocol buffer pieces ----

static void put_varint(strbuf *b, uint64_t v) {
    for (; v >= 0x80; v >>= 7) strbuf_push(b, (char)(v | 0x80));
    strbuf_push(b, (char)v);
}

static void put_bytes_le(strbuf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) strbuf_push(b, (char)(v >> (8 * i)));
}

static void put_key(strbuf *b, int field, int wire) {
    put_varint(b, (uint64_t)(field << 3 | wire));
}

static void put_double(strbuf *b, int field, double x) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    put_key(b, field, 1);
    put_bytes_le(b, bits, 8);
}

static void put_float(strbuf *b, int field, float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    put_key(b, field, 5);
    put_bytes_le(b, bits, 4);
}

static void put_chunk(strbuf *b, int field, const char *data, size_t n) {
    put_key(b, field, 2);
    put_varint(b, n);
    strbuf_append(b, data, n);
}

// Event header: wall_time (1) and step (2). Proto3 leaves out fields at their default value
// (0), as TensorBoard's own writer does, so the files match it byte for byte.
static void put_event_header(strbuf *b, double wall_time, int64_t step) {
    if (wall_time != 0 || signbit(wall_time)) put_double(b, 1, wall_time);
    if (step == 0) return;
    put_key(b, 2, 0);
    put_varint(b, (uint64_t)step);
}

static petal_status write_record(tb_writer *w, const strbuf *payload) {
    strbuf r = {0};
    put_bytes_le(&r, payload->len, 8);
    put_bytes_le(&r, tb_masked_crc(tb_crc32c(r.data, 8)), 4);
    strbuf_append(&r, payload->data, payload->len);
    put_bytes_le(&r, tb_masked_crc(tb_crc32c(payload->data, payload->len)), 4);
    bool ok = fwrite(r.data, 1, r.len, w->f) == r.len && fflush(w->f) == 0;
    strbuf_free(&r);
    return ok ? PETAL_OK
              : petal_error(PETAL_ERR_IO, "cannot write '%s': %s", w->path, strerror(errno));
}

petal_status tb_open(tb_writer *w, const char *dir, double wall_time) {
    strbuf path = {0};
    strbuf_printf(&path, "%s/events.out.tfevents.petal", dir);
    *w = (tb_writer){.f = fopen(path.data, "ab"), .path = strbuf_take(&path)};
    if (!w->f) {
        petal_status s =
            petal_error(PETAL_ERR_IO, "cannot open '%s': %s", w->path, strerror(errno));
        tb_close(w);
        return s;
    }
    if (ftell(w->f) > 0) return PETAL_OK; // a resumed run appends
    strbuf e = {0};
    put_event_header(&e, wall_time, 0);
    put_chunk(&e, 3, "brain.Event:2", 13);
    petal_status s = write_record(w, &e);
    strbuf_free(&e);
    return s;
}

petal_status tb_scalars(tb_writer *w, double wall_time, int64_t step, const char *const *tags,
                        const double *values, int n) {
    if (!w->f) return PETAL_OK; // closed: nothing to write to
    strbuf summary = {0}, value = {0}, e = {0};
    for (int i = 0; i < n; i++) {
        strbuf_clear(&value);
        put_chunk(&value, 1, tags[i], strlen(tags[i]));
        float v = (float)values[i];
        if (v != 0 || signbit(v)) put_float(&value, 2, v);
        put_chunk(&summary, 1, value.data, value.len);
    }
    put_event_header(&e, wall_time, step);
    put_chunk(&e, 5, summary.len ? summary.data : "", summary.len);
    petal_status s = write_record(w, &e);
    strbuf_free(&summary);
    strbuf_free(&value);
    strbuf_free(&e);
    return s;
}

void tb_close(tb_writer *w) {
    if (w->f) fclose(w->f);
    free(w->path);
    *w = (tb_writer){0};
}
