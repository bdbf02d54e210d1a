#include "io/zip.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"

#define EOCD_SIG      0x06054b50u
#define EOCD64_SIG    0x06064b50u
#define LOCATOR64_SIG 0x07064b50u
#define CENTRAL_SIG   0x02014b50u
#define LOCAL_SIG     0x04034b50u
#define EOCD_SIZE     22
#define LOCATOR_SIZE  20
#define EOCD64_SIZE   56
#define CENTRAL_SIZE  46
#define LOCAL_SIZE    30

// ---- CRC-32 (IEEE, reflected), eight bytes per step ----

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t zip_crc32(const uint8_t *p, size_t n) {
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
            crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

// ---- little-endian fields at checked positions ----

static uint64_t le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

// [off, off + len) lies inside the archive.
static bool inside(const zip_archive *z, uint64_t off, uint64_t len) {
    return off <= z->size && len <= z->size - off;
}

static petal_status bad(const zip_archive *z, const char *what, uint64_t at) {
    return petal_error(PETAL_ERR_FORMAT, "%s: not a readable zip archive: %s (at byte %llu)",
                       z->path, what, (unsigned long long)at);
}

// ---- the end of central directory records ----

typedef struct {
    uint64_t entries, cd_offset, cd_size;
} directory;

// The EOCD record: scanning back over at most a 64 KiB comment, the last signature whose comment
// length reaches exactly the end of the archive.
static bool find_eocd(const zip_archive *z, uint64_t *at) {
    if (z->size < EOCD_SIZE) return false;
    uint64_t last = z->size - EOCD_SIZE, stop = last > 0xFFFF ? last - 0xFFFF : 0;
    for (uint64_t pos = last + 1; pos-- > stop;) {
        const uint8_t *p = z->data + pos;
        if (le(p, 4) == EOCD_SIG && pos + EOCD_SIZE + le(p + 20, 2) == z->size) {
            *at = pos;
            return true;
        }
    }
    return false;
}

static petal_status read_zip64_directory(const zip_archive *z, uint64_t eocd, directory *d) {
    if (eocd < LOCATOR_SIZE || le(z->data + eocd - LOCATOR_SIZE, 4) != LOCATOR64_SIG)
        return bad(z, "zip64 sizes without a zip64 locator", eocd);
    uint64_t at = le(z->data + eocd - LOCATOR_SIZE + 8, 8);
    if (!inside(z, at, EOCD64_SIZE) || le(z->data + at, 4) != EOCD64_SIG ||
        at + EOCD64_SIZE > eocd - LOCATOR_SIZE)
        return bad(z, "the zip64 end record is missing or misplaced", at);
    const uint8_t *p = z->data + at;
    if (le(p + 16, 4) != 0 || le(p + 20, 4) != 0 || le(p + 24, 8) != le(p + 32, 8))
        return bad(z, "multi-disk archives are not supported", at);
    *d = (directory){le(p + 32, 8), le(p + 48, 8), le(p + 40, 8)};
    return PETAL_OK;
}

static petal_status read_directory(const zip_archive *z, directory *d) {
    uint64_t eocd;
    if (!find_eocd(z, &eocd)) return bad(z, "no end of central directory record", z->size);
    const uint8_t *p = z->data + eocd;
    if (le(p + 4, 2) != 0 || le(p + 6, 2) != 0 || le(p + 8, 2) != le(p + 10, 2))
        return bad(z, "multi-disk archives are not supported", eocd);
    *d = (directory){le(p + 10, 2), le(p + 16, 4), le(p + 12, 4)};
    if (d->entries == 0xFFFF || d->cd_offset == 0xFFFFFFFFu || d->cd_size == 0xFFFFFFFFu) {
        petal_status st = read_zip64_directory(z, eocd, d);
        if (st != PETAL_OK) return st;
    }
    if (!inside(z, d->cd_offset, d->cd_size) || d->cd_offset + d->cd_size > eocd)
        return bad(z, "the central directory lies outside the archive", d->cd_offset);
    if (d->entries > d->cd_size / CENTRAL_SIZE)
        return bad(z, "more entries than the central directory can hold", eocd);
    return PETAL_OK;
}

// ---- central directory entries ----

// Replaces the 0xFFFFFFFF fields of a central record by the zip64 extra field's values, which
// come in the order: uncompressed size, compressed size, local header offset.
static bool apply_zip64_extra(const uint8_t *extra, uint64_t len, uint64_t *usize, uint64_t *csize,
                              uint64_t *local) {
    uint64_t *fields[3] = {usize, csize, local};
    for (uint64_t pos = 0; pos + 4 <= len;) {
        uint64_t id = le(extra + pos, 2), size = le(extra + pos + 2, 2);
        if (pos + 4 + size > len) return false;
        if (id == 0x0001) {
            uint64_t at = pos + 4;
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xFFFFFFFFu) continue;
                if (at + 8 > pos + 4 + size) return false;
                *fields[i] = le(extra + at, 8);
                at += 8;
            }
            return true;
        }
        pos += 4 + size;
    }
    return *usize != 0xFFFFFFFFu && *csize != 0xFFFFFFFFu && *local != 0xFFFFFFFFu;
}

// The entry's data follows its local header, whose name and extra lengths may differ from the
// central record's.
static petal_status locate_data(const zip_archive *z, zip_entry *e, uint64_t local,
                                uint64_t csize) {
    if (!inside(z, local, LOCAL_SIZE) || le(z->data + local, 4) != LOCAL_SIG)
        return bad(z, "a local header is missing", local);
    uint64_t name_len = le(z->data + local + 26, 2), extra_len = le(z->data + local + 28, 2);
    uint64_t data = local + LOCAL_SIZE + name_len + extra_len;
    if (name_len != strlen(e->name) || !inside(z, local + LOCAL_SIZE, name_len) ||
        memcmp(z->data + local + LOCAL_SIZE, e->name, name_len) != 0)
        return bad(z, "a local header names another entry", local);
    if (!inside(z, data, csize)) return bad(z, "an entry's data runs past the end", data);
    e->offset = data;
    return PETAL_OK;
}

static petal_status read_entry(zip_archive *z, uint64_t *pos, uint64_t end, zip_entry *e) {
    const uint8_t *p = z->data + *pos;
    if (*pos + CENTRAL_SIZE > end || le(p, 4) != CENTRAL_SIG)
        return bad(z, "a central directory record is damaged", *pos);
    uint64_t name_len = le(p + 28, 2), extra_len = le(p + 30, 2), comment_len = le(p + 32, 2);
    uint64_t usize = le(p + 24, 4), csize = le(p + 20, 4), local = le(p + 42, 4);
    if (*pos + CENTRAL_SIZE + name_len + extra_len + comment_len > end)
        return bad(z, "a central directory record runs past the directory", *pos);
    if (memchr(p + CENTRAL_SIZE, '\0', name_len))
        return bad(z, "an entry name holds a NUL byte", *pos);
    e->name = buffer_strndup((const char *)p + CENTRAL_SIZE, name_len);
    if (!apply_zip64_extra(p + CENTRAL_SIZE + name_len, extra_len, &usize, &csize, &local))
        return bad(z, "a zip64 extra field is damaged", *pos);
    if (le(p + 8, 2) & 1) return bad(z, "encrypted entries are not supported", *pos);
    e->stored = le(p + 10, 2) == 0;
    if (e->stored && usize != csize) return bad(z, "a stored entry's sizes differ", *pos);
    e->size = usize;
    e->crc32 = (uint32_t)le(p + 16, 4);
    *pos += CENTRAL_SIZE + name_len + extra_len + comment_len;
    return locate_data(z, e, local, csize);
}

petal_status zip_open(zip_archive *z, const char *path, const uint8_t *data, size_t size) {
    *z = (zip_archive){.path = path, .data = data, .size = size};
    directory d = {0};
    petal_status st = read_directory(z, &d);
    if (st != PETAL_OK) return st;
    z->entries = calloc(d.entries ? d.entries : 1, sizeof *z->entries);
    PETAL_CHECK(z->entries != NULL, "zip_open: out of host memory");
    uint64_t pos = d.cd_offset, end = d.cd_offset + d.cd_size;
    for (uint64_t i = 0; i < d.entries && st == PETAL_OK; i++) {
        st = read_entry(z, &pos, end, &z->entries[z->n]);
        z->n++; // counted even on failure, so that zip_close frees its name
        if (st == PETAL_OK && zip_find(z, z->entries[z->n - 1].name) != &z->entries[z->n - 1])
            st = petal_error(PETAL_ERR_FORMAT, "%s: the archive holds two entries named '%s'", path,
                             z->entries[z->n - 1].name);
    }
    if (st != PETAL_OK) zip_close(z);
    return st;
}

void zip_close(zip_archive *z) {
    for (int i = 0; i < z->n; i++) free(z->entries[i].name);
    free(z->entries);
    z->entries = NULL;
    z->n = 0;
}

zip_entry *zip_find(const zip_archive *z, const char *name) {
    for (int i = 0; i < z->n; i++)
        if (strcmp(z->entries[i].name, name) == 0) return &z->entries[i];
    return NULL;
}

petal_status zip_entry_data(const zip_archive *z, zip_entry *e, const uint8_t **out) {
    if (!e->stored)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: entry '%s' is compressed; torch.save stores entries uncompressed",
                           z->path, e->name);
    if (!e->verified && zip_crc32(z->data + e->offset, e->size) != e->crc32)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: entry '%s' fails its CRC-32 check (the file is damaged)", z->path,
                           e->name);
    e->verified = true;
    *out = z->data + e->offset;
    return PETAL_OK;
}
