// A reader for the zip archives torch.save writes (docs/reference.md "Released weights"): stored
// (uncompressed) entries, data descriptors, zip64 records, any folder prefix. Every offset and
// size is checked against the archive before it is used; entries are read in place.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/error.h"

typedef struct {
    char *name;
    uint64_t offset; // of the entry's bytes, from the start of the archive
    uint64_t size;
    uint32_t crc32;
    bool stored;   // uncompressed: the only method zip_entry_data reads
    bool verified; // the CRC-32 has been checked
} zip_entry;

typedef struct {
    const char *path; // for messages
    const uint8_t *data;
    size_t size;
    zip_entry *entries;
    int n;
} zip_archive;

// Reads the central directory of the archive at data[0, size), which must outlive z. Errors name
// `path` and what is wrong (PETAL_ERR_FORMAT).
petal_status zip_open(zip_archive *z, const char *path, const uint8_t *data, size_t size);
void zip_close(zip_archive *z);

zip_entry *zip_find(const zip_archive *z, const char *name);
// The bytes of a stored entry, after checking its CRC-32 (once).
petal_status zip_entry_data(const zip_archive *z, zip_entry *e, const uint8_t **out);

uint32_t zip_crc32(const uint8_t *data, size_t n);
