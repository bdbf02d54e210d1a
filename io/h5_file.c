#include "io/h5_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/error.h"

h5_quiet h5_quiet_begin(void) {
    h5_quiet q;
    H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

void h5_quiet_end(h5_quiet q) {
    H5Eset_auto2(H5E_DEFAULT, q.fn, q.data);
}

static herr_t keep_innermost(unsigned n, const H5E_error2_t *err, void *data) {
    if (n == 0) snprintf(data, 256, "%s", err->desc);
    return 0;
}

const char *h5_reason(void) {
    static _Thread_local char reason[256];
    reason[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, reason);
    return reason;
}

static hid_t half_type(hid_t base, size_t esize, size_t msize, size_t ebias) {
    hid_t t = H5Tcopy(base);
    H5Tset_fields(t, 15, msize, esize, 0, msize);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, ebias);
    return t;
}

hid_t h5_type(petal_dtype dtype, bool file) {
    hid_t f32 = file ? H5T_IEEE_F32LE : H5T_NATIVE_FLOAT;
    switch (dtype) {
    case PETAL_F32:
        return H5Tcopy(f32);
    case PETAL_F64:
        return H5Tcopy(file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE);
    case PETAL_I32:
        return H5Tcopy(file ? H5T_STD_I32LE : H5T_NATIVE_INT32);
    case PETAL_I64:
        return H5Tcopy(file ? H5T_STD_I64LE : H5T_NATIVE_INT64);
    case PETAL_F16:
        return half_type(f32, 5, 10, 15);
    default:
        PETAL_CHECK(dtype == PETAL_BF16, "h5_type: dtype %d has no HDF5 type", (int)dtype);
        return half_type(f32, 8, 7, 127);
    }
}

bool h5_classify(hid_t type, petal_dtype *out) {
    size_t size = H5Tget_size(type);
    if (H5Tget_class(type) == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_2) {
        if (size == 4 || size == 8) *out = size == 4 ? PETAL_I32 : PETAL_I64;
        return size == 4 || size == 8;
    }
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_class(type) != H5T_FLOAT ||
        H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0)
        return false;
    static const struct {
        size_t size, esize, msize;
        petal_dtype dtype;
    } floats[] = {{4, 8, 23, PETAL_F32},
                  {8, 11, 52, PETAL_F64},
                  {2, 5, 10, PETAL_F16},
                  {2, 8, 7, PETAL_BF16}};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        if (floats[i].size == size && floats[i].esize == esize && floats[i].msize == msize) {
            *out = floats[i].dtype;
            return true;
        }
    }
    return false;
}

bool h5_object_id_of(hid_t obj, h5_object_id *out) {
    memset(out, 0, sizeof *out);
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    if (H5Oget_info3(obj, &info, H5O_INFO_BASIC) < 0) return false;
    _Static_assert(sizeof info.token <= sizeof out->bytes, "an object token fits");
    memcpy(out->bytes, &info.token, sizeof info.token);
#else
    H5O_info_t info;
    if (H5Oget_info2(obj, &info, H5O_INFO_BASIC) < 0) return false;
    memcpy(out->bytes, &info.addr, sizeof info.addr);
#endif
    out->links = info.rc;
    return true;
}

bool h5_write_scalar_attr(hid_t obj, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = attr >= 0 && H5Awrite(attr, type, value) >= 0;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return ok;
}

bool h5_write_string_attr(hid_t obj, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    bool ok = h5_write_scalar_attr(obj, name, type, &value);
    H5Tclose(type);
    return ok;
}

hid_t h5_create_in_memory(const char *name, size_t userblock) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_fapl_core(fapl, (size_t)4 << 20, 0);
    if (userblock) H5Pset_userblock(fcpl, userblock);
    hid_t file = H5Fcreate(name, H5F_ACC_TRUNC, fcpl, fapl);
    hid_t errors = H5Eget_current_stack(); // H5Pclose would clear the reason of a failure
    H5Pclose(fcpl);
    H5Pclose(fapl);
    H5Eset_current_stack(errors);
    return file;
}

// ---- files opened from memory petal owns: every "copy" HDF5 asks for is the buffer itself ----

static void *udata_copy(void *udata) {
    return udata;
}

static herr_t udata_free(void *udata) {
    (void)udata;
    return 0;
}

static void *view_malloc(size_t size, H5FD_file_image_op_t op, void *udata) {
    const h5_memory *m = udata;
    (void)op;
    return size == m->size ? (void *)m->data : NULL;
}

static void *view_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op,
                         void *udata) {
    (void)size, (void)op, (void)udata;
    return dst == src ? dst : NULL;
}

static void *view_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)ptr, (void)size, (void)op, (void)udata;
    return NULL; // the file is read-only
}

static herr_t view_free(void *ptr, H5FD_file_image_op_t op, void *udata) {
    (void)ptr, (void)op, (void)udata;
    return 0;
}

hid_t h5_open_in_memory(const char *name, h5_memory *mem) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, (size_t)1 << 20, 0);
    H5FD_file_image_callbacks_t callbacks = {view_malloc, view_memcpy, view_realloc, view_free,
                                             udata_copy,  udata_free,  mem};
    H5Pset_file_image_callbacks(fapl, &callbacks);
    H5Pset_file_image(fapl, (void *)mem->data, mem->size);
    hid_t file = H5Fopen(name, H5F_ACC_RDONLY, fapl);
    hid_t errors = H5Eget_current_stack(); // H5Pclose would clear the reason of a failure
    H5Pclose(fapl);
    H5Eset_current_stack(errors);
    return file;
}
