// libFuzzer target for io/pth (zip container + pickle interpreter). Built and run by
// scripts/fuzz.sh pth SECONDS.
//
// An input whose first byte is even ('P' is) is read as a whole file. An odd first byte is followed
// by records [u16 little-endian length][bytes]: the first becomes archive/data.pkl, the next ones
// archive/data/0, archive/data/1, ...; the target zips them with correct CRCs, so mutations reach
// the pickle interpreter and the tensor reader instead of stopping at the CRC check.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pth.h"
#include "io/zip.h"

#define MAX_MEMBERS 17

typedef struct {
    uint8_t *data;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (n == 0) return;
    if (b->len + n > b->cap) {
        b->cap = 2 * (b->len + n);
        b->data = realloc(b->data, b->cap);
        if (!b->data) abort();
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_le(bytes *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) {
        uint8_t c = i < 8 ? (uint8_t)(v >> (8 * i)) : 0;
        put(b, &c, 1);
    }
}

// A stored zip of the named members.
static bytes zip_members(int n, char names[][32], const uint8_t **data, const size_t *size) {
    bytes out = {0}, central = {0};
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
        put(&out, names[i], name_len);
        put(&out, data[i], size[i]);
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
        put(&central, names[i], name_len);
    }
    size_t cd_offset = out.len;
    put(&out, central.data, central.len);
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

static void read_and_check(const uint8_t *data, size_t size) {
    tensor_list l;
    if (pth_read_memory("fuzz.pth", data, size, &l) != PETAL_OK) return;
    for (int i = 0; i < l.n; i++)
        if (!l.items[i].name ||
            tensor_nbytes(l.items[i].value) !=
                (size_t)tensor_numel(l.items[i].value) * dtype_size(l.items[i].value->dtype))
            abort();
    tensor_list_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || data[0] % 2 == 0) {
        read_and_check(data, size);
        return 0;
    }
    char names[MAX_MEMBERS][32];
    const uint8_t *member[MAX_MEMBERS];
    size_t len[MAX_MEMBERS];
    int n = 0;
    for (size_t at = 1; n < MAX_MEMBERS && at + 2 <= size; n++) {
        size_t want = data[at] | (size_t)data[at + 1] << 8;
        at += 2;
        len[n] = want < size - at ? want : size - at;
        member[n] = data + at;
        at += len[n];
        if (n == 0)
            snprintf(names[n], sizeof names[n], "archive/data.pkl");
        else
            snprintf(names[n], sizeof names[n], "archive/data/%d", n - 1);
    }
    bytes zip = zip_members(n, names, member, len);
    read_and_check(zip.data, zip.len);
    free(zip.data);
    return 0;
}
