// HDF5 plumbing for io/checkpoint.c: quiet error stacks, petal dtypes as HDF5 types, scalar
// attributes, and files that live in memory (built there before petal writes them out; opened
// from a mapped file that petal has already checked).
#pragma once

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>

#include "tensor/dtype.h"

// HDF5 prints its error stack to stderr by default; petal reports errors itself, so each public
// function silences it for its duration and restores the caller's setting.
typedef struct {
    H5E_auto2_t fn;
    void *data;
} h5_quiet;

h5_quiet h5_quiet_begin(void);
void h5_quiet_end(h5_quiet q);
// The innermost message on HDF5's error stack ("" if none), for error messages.
const char *h5_reason(void);

// A new type id for dtype, for the file (little-endian) or for memory; the caller closes it.
// f16 and bf16 are 2-byte float types with the layout h5py uses for float16.
hid_t h5_type(petal_dtype dtype, bool file);
// The petal dtype of a stored type, by class, size and float layout (any byte order).
bool h5_classify(hid_t type, petal_dtype *out);

// What names a stored object within its file whichever hard link reaches it (an address in
// libhdf5 1.10, a token from 1.12), and how many hard links reach it.
typedef struct {
    unsigned char bytes[16];
    unsigned links;
} h5_object_id;
bool h5_object_id_of(hid_t obj, h5_object_id *out);

bool h5_write_scalar_attr(hid_t obj, const char *name, hid_t type, const void *value);
bool h5_write_string_attr(hid_t obj, const char *name, const char *value); // UTF-8, variable length

// Creates a file held in memory (HDF5's core driver, no backing store) with a user block of
// `userblock` bytes (zero for none); H5Fget_file_image copies it out.
hid_t h5_create_in_memory(const char *name, size_t userblock);

// Opens `size` bytes at `data` read-only as an HDF5 file, without copying them. `mem` must stay
// valid (and unchanged) until H5Fclose. `name` identifies the file to HDF5 and must not exist on
// disk (the core driver refuses a name it could open).
typedef struct {
    const void *data;
    size_t size;
} h5_memory;
hid_t h5_open_in_memory(const char *name, h5_memory *mem);
