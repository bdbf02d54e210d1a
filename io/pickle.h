// A pickle interpreter that understands only what a torch.save state dict needs, and never runs
// anything (docs/reference.md "Released weights").
//
// It implements the opcodes torch.save emits (protocol 2, and the protocol 4 forms: FRAME,
// MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL), builds plain values (None, bools, ints, floats,
// strings, bytes, tuples, lists, dicts), and resolves only these globals:
//     collections.OrderedDict                      -> an empty dict (REDUCE with no arguments)
//     torch._utils._rebuild_tensor_v2 / _v3        -> a tensor description (REDUCE)
//     torch._utils._rebuild_parameter              -> the tensor it wraps (REDUCE)
//     _codecs.encode(str, 'latin1')                -> bytes (how protocol 2 pickles bytes)
//     torch.{Float,Half,BFloat16,Double,Long,Int,Untyped}Storage, torch.float32 (and the other
//     dtypes petal has)                            -> arguments of the above
// Persistent ids ('storage', <storage class>, key, location, numel) become storage descriptions.
// Any other global or opcode is rejected with an error naming it and its byte offset.
// Tensors are descriptions here; io/pth.c reads their bytes from the archive.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/tensor.h"

typedef enum {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STRING, // UTF-8 text
    PK_BYTES,
    PK_TUPLE,
    PK_LIST,
    PK_DICT,
    PK_GLOBAL,  // one of the globals above
    PK_STORAGE, // a persistent id naming a storage in the archive
    PK_TENSOR,
} pk_type;

typedef enum {
    PK_ORDERED_DICT,
    PK_REBUILD_TENSOR_V2,
    PK_REBUILD_TENSOR_V3,
    PK_REBUILD_PARAMETER,
    PK_CODECS_ENCODE,
    PK_STORAGE_CLASS, // torch.FloatStorage, ...: dtype (untyped: torch.UntypedStorage, bytes)
    PK_DTYPE,         // torch.float32, ...
} pk_global;

typedef struct pk_value pk_value;
struct pk_value {
    pk_type type;
    union {
        bool boolean;
        int64_t integer;
        double number;
        struct {
            char *chars; // NUL-terminated; may also hold NULs (then see len)
            size_t len;
        } string; // PK_STRING and PK_BYTES
        struct {
            pk_value **items;
            size_t len, cap;
        } seq; // PK_TUPLE and PK_LIST
        struct {
            pk_value **keys, **values; // in insertion order; a repeated key replaces its value
            size_t len, cap;
        } dict;
        struct {
            pk_global kind;
            const char *name; // "torch.FloatStorage"
            petal_dtype dtype;
            bool untyped;
        } global;
        struct {
            char *key;         // the archive entry is <prefix>/data/<key>
            petal_dtype dtype; // of its elements, unless untyped (bytes)
            bool untyped;
            int64_t numel;
        } storage;
        struct {
            const pk_value *storage;
            petal_dtype dtype;
            int64_t offset; // in elements of dtype
            int ndim;
            int64_t size[PETAL_MAX_DIMS], stride[PETAL_MAX_DIMS];
        } tensor;
    };
};

typedef struct pickle_doc pickle_doc; // owns every value of one loaded pickle

// Interprets size bytes of pickle; *root is the value STOP returned. Errors name `source` and the
// byte offset of the opcode (PETAL_ERR_FORMAT). On failure *doc is NULL.
petal_status pickle_load(const uint8_t *data, size_t size, const char *source, pickle_doc **doc,
                         const pk_value **root);
void pickle_free(pickle_doc *doc); // NULL is fine

const char *pk_type_name(pk_type type); // "a dict", "a tensor", ...
// The value of string key `key` in a dict, or NULL.
const pk_value *pk_dict_get(const pk_value *dict, const char *key);
